"""SAM perception backbone: building it at any size, loading official weights, pre- and post-processing.

The modules are ``segment_anything.modeling``'s own (``ImageEncoderViT``,
``PromptEncoder``) and :class:`trackgpt.decoder.ReferringMaskDecoder` (a
``MaskDecoder`` subclass with no extra parameters), held under SAM's attribute
names. So an official ``sam_vit_{b,l,h}_*.pth`` state dict loads into
:class:`SamParts` strictly and unchanged (:func:`load_sam_checkpoint`).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
from segment_anything.modeling import ImageEncoderViT, PromptEncoder, TwoWayTransformer
from segment_anything.utils.transforms import ResizeLongestSide
from torch import nn
from torch.nn import functional as F

from perception_common.checkpoint import load_pth_state_dict, load_strict

from .config import SamConfig
from .decoder import ReferringMaskDecoder


class SamParts(nn.Module):
    """SAM's image encoder, prompt encoder and (referring) mask decoder under the official names.

    Unlike ``segment_anything.modeling.Sam`` it holds no pre-processing buffers; that is
    :class:`SamTransform`'s job, so callers and tests reuse it apart from the network.

    Args:
        config: sizes (see :data:`trackgpt.config.SAM_SIZES`).
    """

    def __init__(self, *, config: SamConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.image_encoder = ImageEncoderViT(
            depth=config.encoder_depth,
            embed_dim=config.encoder_embed_dim,
            img_size=config.img_size,
            mlp_ratio=4,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            num_heads=config.encoder_num_heads,
            patch_size=config.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=tuple(config.encoder_global_attn_indexes),
            window_size=config.window_size,
            out_chans=config.prompt_embed_dim,
        )
        self.prompt_encoder = build_prompt_encoder(config)
        self.mask_decoder = build_mask_decoder(config)

    def image_pe(self) -> torch.Tensor:
        """Dense positional encoding of the image embedding, ``1 x C x h x w``.

        Same values as ``PromptEncoder.get_dense_pe()``, computed in float32 whatever the module dtype
        (segment_anything's own code fails in bf16/fp16) and returned in the decoder's dtype.
        """
        side = self.config.embedding_size
        gauss = self.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix.float()
        centers = (torch.arange(side, dtype=torch.float32, device=gauss.device) + 0.5) / side
        y, x = torch.meshgrid(centers, centers, indexing="ij")
        coords = (2 * torch.stack([x, y], dim=-1) - 1) @ gauss * (2 * np.pi)
        pe = torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1).permute(2, 0, 1).unsqueeze(0)
        return pe.to(self.mask_decoder.iou_token.weight.dtype)

    def dense_prompt(self, batch: int) -> torch.Tensor:
        """SAM's "no mask" dense prompt, ``B x C x h x w`` (TrackGPT gives no mask prompt)."""
        side = self.config.embedding_size
        weight = self.prompt_encoder.no_mask_embed.weight
        return weight.reshape(1, -1, 1, 1).expand(batch, -1, side, side)


def build_prompt_encoder(config: SamConfig) -> PromptEncoder:
    """SAM's prompt encoder at ``config``'s sizes."""
    side = config.embedding_size
    return PromptEncoder(
        embed_dim=config.prompt_embed_dim,
        image_embedding_size=(side, side),
        input_image_size=(config.img_size, config.img_size),
        mask_in_chans=config.mask_in_chans,
    )


def build_mask_decoder(config: SamConfig) -> ReferringMaskDecoder:
    """SAM's (referring) mask decoder at ``config``'s sizes."""
    return ReferringMaskDecoder(
        num_multimask_outputs=config.num_multimask_outputs,
        transformer=TwoWayTransformer(
            depth=config.decoder_depth,
            embedding_dim=config.prompt_embed_dim,
            mlp_dim=config.decoder_mlp_dim,
            num_heads=config.decoder_num_heads,
        ),
        transformer_dim=config.prompt_embed_dim,
        iou_head_depth=config.iou_head_depth,
        iou_head_hidden_dim=config.iou_head_hidden_dim,
    )


def build_sam(config: SamConfig) -> SamParts:
    """Build :class:`SamParts`; loads ``config.checkpoint`` strictly when it is set."""
    sam = SamParts(config=config)
    if config.checkpoint:
        load_sam_checkpoint(sam, config.checkpoint)
    return sam


def load_sam_checkpoint(sam: SamParts, path: str | Path) -> None:
    """Load an official ``sam_vit_*.pth`` (``torch.load(weights_only=True)``) strictly into ``sam``.

    Raises:
        CheckpointError: the file is missing/corrupt, or keys are missing, unexpected or of another
            shape (e.g. a ViT-L checkpoint for a ViT-H config); the message names them.
    """
    state = load_pth_state_dict(path)
    # segment_anything's Sam keeps pixel_mean / pixel_std as non-persistent buffers; a few
    # re-saved checkpoints still carry them. They are pre-processing, held by SamTransform.
    state = {k: v for k, v in state.items() if k not in ("pixel_mean", "pixel_std")}
    load_strict(sam, state, f"SAM checkpoint {path}")


class SamTransform:
    """SAM's pre-processing and post-processing, apart from the network.

    Pre-processing (as ``SamPredictor.set_image``): resize the longest side to ``img_size``, normalise with the
    pixel mean/std, pad bottom/right with zeros to ``img_size x img_size``. The resize is PyTorch's antialiased
    bilinear filter on uint8, which implements PIL's bilinear resampling (``segment_anything``'s
    ``ResizeLongestSide``) without the round trip through PIL: about 1 ms less per 640x480 frame on one thread,
    pixels within 2 of 255 of PIL's (rounding); ``SamConfig.resize="pil"`` uses ``ResizeLongestSide`` itself
    (imported LISA models). Training and inference both go through :meth:`preprocess`.
    Post-processing (as ``Sam.postprocess_masks``): upsample the low-resolution logits to ``img_size``, crop the
    padding away, resize to the frame.

    Args:
        config: the SAM sizes and normalisation.
    """

    def __init__(self, *, config: SamConfig) -> None:
        self.img_size = config.img_size
        self.resize = ResizeLongestSide(config.img_size)
        self.use_pil = config.resize == "pil"
        self.pixel_mean = torch.tensor(config.pixel_mean, dtype=torch.float32).view(3, 1, 1)
        self.pixel_std = torch.tensor(config.pixel_std, dtype=torch.float32).view(3, 1, 1)

    def input_size(self, original_size: tuple[int, int]) -> tuple[int, int]:
        """Size ``(h, w)`` of the resized frame inside the padded input."""
        return self.resize.get_preprocess_shape(original_size[0], original_size[1], self.img_size)

    def preprocess(self, frame_rgb8: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """Return the padded, normalised input ``1 x 3 x S x S`` (float32) and the resized size ``(h, w)``.

        Args:
            frame_rgb8: ``H x W x 3`` uint8 RGB (see :func:`perception_common.images.to_rgb8`).

        Raises:
            ValueError: the frame is not ``H x W x 3`` uint8.
        """
        if frame_rgb8.dtype != np.uint8 or frame_rgb8.ndim != 3 or frame_rgb8.shape[2] != 3:
            raise ValueError(f"expected an H x W x 3 uint8 frame, got {frame_rgb8.dtype} {frame_rgb8.shape}")
        h, w = self.input_size((int(frame_rgb8.shape[0]), int(frame_rgb8.shape[1])))
        if self.use_pil:  # segment_anything's own resize (PIL bilinear), as SAM and LISA run it
            frame_rgb8 = self.resize.apply_image(frame_rgb8)
        frame_rgb8 = np.ascontiguousarray(frame_rgb8)
        if not frame_rgb8.flags.writeable:  # a message's or a file's buffer: torch wants memory it may write
            frame_rgb8 = frame_rgb8.copy()
        x = torch.from_numpy(frame_rgb8).permute(2, 0, 1).unsqueeze(0)
        if (h, w) != tuple(frame_rgb8.shape[:2]):
            x = F.interpolate(x, (h, w), mode="bilinear", antialias=True, align_corners=False)
        x = (x[0].float() - self.pixel_mean) / self.pixel_std
        x = F.pad(x, (0, self.img_size - w, 0, self.img_size - h))
        return x.unsqueeze(0).contiguous(), (h, w)

    def postprocess(
        self, low_res_logits: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int]
    ) -> torch.Tensor:
        """Mask logits at the frame's size.

        Args:
            low_res_logits: ``B x 1 x h' x w'`` decoder logits (``h' = 4 * img_size / patch_size``).
            input_size: the resized frame size ``(h, w)`` from :meth:`preprocess`.
            original_size: the frame size ``(H, W)``.

        Returns:
            ``B x 1 x H x W`` float32 logits.
        """
        x = F.interpolate(low_res_logits.float(), (self.img_size, self.img_size), mode="bilinear", align_corners=False)
        x = x[..., : input_size[0], : input_size[1]]
        return F.interpolate(x, tuple(original_size), mode="bilinear", align_corners=False)
