"""The revamped SAM mask decoder of TrackGPT (paper Sec. 3.4) and its purport head.

Two changes to SAM's decoder, as the paper states them:

1. the referring query Q_R (and the cross-frame online query Q_t) join the
   sparse prompt tokens, in place of SAM's points and boxes;
2. the purport query Q_p is fused with SAM's IoU token by element-wise
   multiplication before the two-way transformer; the transformer's output at
   that token goes to :class:`PurportHead`, which gives S_p in [0, 1].

:class:`ReferringMaskDecoder` subclasses ``segment_anything``'s ``MaskDecoder``
and adds no parameters, so an official SAM checkpoint's ``mask_decoder.*``
tensors load into it unchanged; the purport head is a separate module with
its own names (``purport_head.*``).

Choices the paper leaves open (its supplementary material is not available):

* one image per prompt set: the batch dimension of the image embedding and
  of the tokens is the same (SAM repeats the image per prompt instead);
* a single mask from SAM's first mask token (``multimask_output=False``, as in
  LISA); SAM's own IoU prediction for that mask is returned beside S_p;
* S_p comes from a new head (MLP + sigmoid) on the fused IoU-token output,
  trained with MSE against the mask IoU (Sec. 3.5), not from SAM's IoU head.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from segment_anything.modeling.mask_decoder import MLP, MaskDecoder
from torch import nn


class DecoderOutput(NamedTuple):
    """Outputs of :class:`ReferringMaskDecoder`.

    Attributes:
        mask_logits: ``B x 1 x 4h x 4w`` low-resolution mask logits.
        iou_prediction: ``B x 1`` SAM's IoU estimate of that mask.
        purport_token: ``B x C`` transformer output at the fused IoU/purport token.
    """

    mask_logits: torch.Tensor
    iou_prediction: torch.Tensor
    purport_token: torch.Tensor


class ReferringMaskDecoder(MaskDecoder):
    """SAM's mask decoder prompted by referring tokens, with the purport query fused into the IoU token.

    Constructor arguments are ``MaskDecoder``'s (``transformer_dim``, ``transformer``,
    ``num_multimask_outputs``, ``activation``, ``iou_head_depth``, ``iou_head_hidden_dim``).
    """

    def forward(  # type: ignore[override]
        self,
        *,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        prompt_tokens: torch.Tensor,
        purport_query: torch.Tensor,
        dense_prompt: torch.Tensor,
    ) -> DecoderOutput:
        """Decode one mask per image.

        Args:
            image_embeddings: ``B x C x h x w`` image encoder output f_t.
            image_pe: ``1 x C x h x w`` dense positional encoding.
            prompt_tokens: ``B x N x C`` sparse prompt tokens (TrackGPT: ``[Q_R, Q_t]``, N = 2).
            purport_query: ``B x C`` Q_p, multiplied into the IoU token.
            dense_prompt: ``B x C x h x w`` dense prompt (SAM's "no mask" embedding).

        Returns:
            :class:`DecoderOutput`.
        """
        batch = image_embeddings.shape[0]
        iou_token = self.iou_token.weight.unsqueeze(0) * purport_query.unsqueeze(1)  # B x 1 x C
        mask_tokens = self.mask_tokens.weight.unsqueeze(0).expand(batch, -1, -1)
        tokens = torch.cat([iou_token, mask_tokens, prompt_tokens.to(iou_token.dtype)], dim=1)

        src = image_embeddings + dense_prompt
        pos_src = image_pe.expand(batch, -1, -1, -1)
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos_src, tokens)
        purport_token = hs[:, 0, :]
        mask_token = hs[:, 1, :]  # the single-mask output token

        src = src.transpose(1, 2).reshape(b, c, h, w)
        upscaled = self.output_upscaling(src)
        hyper_in = self.output_hypernetworks_mlps[0](mask_token).unsqueeze(1)  # B x 1 x C/8
        b, c, h, w = upscaled.shape
        mask_logits = (hyper_in @ upscaled.reshape(b, c, h * w)).reshape(b, 1, h, w)
        iou_prediction = self.iou_prediction_head(purport_token)[:, :1]
        return DecoderOutput(mask_logits, iou_prediction, purport_token)


class PurportHead(nn.Module):
    """S_p = sigmoid(MLP(purport token)): how well the current result fits the instruction's purport.

    Args:
        dim: token width C.
        hidden_dim: MLP hidden width.
        depth: MLP layers (ReLU between them).
    """

    def __init__(self, *, dim: int, hidden_dim: int, depth: int = 3) -> None:
        super().__init__()
        self.mlp = MLP(dim, hidden_dim, 1, depth, sigmoid_output=True)

    def forward(self, purport_token: torch.Tensor) -> torch.Tensor:
        """``B x C`` -> ``B`` purport scores in ``[0, 1]``."""
        return self.mlp(purport_token).squeeze(-1)
