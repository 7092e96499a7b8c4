"""The frame path laid out for inference on CPUs: the image encoder (fp32, or bf16 where the CPU has it) and the
decoding step (:class:`FastMaskDecoder`, in the model's dtype).

:class:`FastImageEncoder` computes what ``segment_anything``'s ``ImageEncoderViT`` computes (the same weights, read
from it once) with fewer and larger kernels:

* the patch embedding (a 16x16 convolution with stride 16 over 3 channels) is one matrix product over the patches:
  oneDNN runs that convolution in bf16 about 100x slower than in fp32 (87 ms against 0.7 ms at 256x256, measured);
* attention goes through ``F.scaled_dot_product_attention`` with SAM's decomposed relative position terms as its
  additive mask (no N x N score tensor built and soft-maxed by separate kernels); the relative position tables
  are gathered once, not per frame;
* the tokens stay channels-last to the end: the neck's 1x1 convolution is a matrix product, its LayerNorm2d a
  layer norm over the last dimension, its 3x3 convolution runs channels-last.

In bf16 the weights are converted once; layer norms and soft-max accumulate in fp32 inside their kernels; the
output is returned in fp32. ``dtype=torch.float32`` gives SAM's encoder to float rounding (tested).

Both copies run as TorchScript traces of themselves (:class:`perception_common.tracing.Traced`): the same kernels
in the same order, without Python and the dispatcher's work between them, which a decoding step of about 200 small
operations feels most.
:class:`FastPostprocess` turns the decoder's low-resolution logits into the frame's with two matrix products.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from segment_anything.modeling.image_encoder import ImageEncoderViT, get_rel_pos
from torch import nn
from torch.nn import functional as F


def _copy(t: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """``t`` in ``dtype``, detached: a converted copy, or the same storage when the dtype is already right."""
    return None if t is None else t.detach().to(dtype)


class _Block(nn.Module):
    def __init__(self, block, dtype: torch.dtype, grid: int) -> None:
        super().__init__()
        attn = block.attn
        self.heads = attn.num_heads
        self.window = block.window_size
        self.eps = (block.norm1.eps, block.norm2.eps)
        side = self.window if self.window > 0 else grid
        for name, mod in (("norm1", block.norm1), ("norm2", block.norm2)):
            self.register_buffer(f"{name}_w", _copy(mod.weight, dtype))
            self.register_buffer(f"{name}_b", _copy(mod.bias, dtype))
        self.qkv = _linear(attn.qkv, dtype)
        self.proj = _linear(attn.proj, dtype)
        self.fc1 = _linear(block.mlp.lin1, dtype)
        self.fc2 = _linear(block.mlp.lin2, dtype)
        self.use_rel_pos = attn.use_rel_pos
        if self.use_rel_pos:  # the tables indexed by (query row, key row) and (query column, key column), once
            self.register_buffer("rel_h", get_rel_pos(side, side, attn.rel_pos_h.detach()).to(dtype))
            self.register_buffer("rel_w", get_rel_pos(side, side, attn.rel_pos_w.detach()).to(dtype))
            # bias[(qh, qw), (kh, kw)] = rel_h[(qh, qw), kh] + rel_w[(qh, qw), kw] = [rel_h, rel_w] @ spread: one
            # small product instead of a broadcast add over N x N (3x faster in bf16)
            rows = torch.arange(side).repeat_interleave(side)  # kh of each key
            cols = torch.arange(side).repeat(side)  # kw of each key
            spread = torch.cat([F.one_hot(rows, side).t(), F.one_hot(cols, side).t()]).to(dtype)
            self.register_buffer("spread", spread)  # (side + side) x N

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        n, heads = h * w, self.heads
        qkv = F.linear(x, *self.qkv).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # b x heads x n x d
        bias = None
        if self.use_rel_pos:
            r_q = q.reshape(b * heads, h, w, -1)
            rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, self.rel_h)
            rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, self.rel_w)
            rel = torch.cat([rel_h.reshape(b * heads, n, -1), rel_w.reshape(b * heads, n, -1)], dim=-1)
            bias = (rel @ self.spread).view(b, heads, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return F.linear(out.transpose(1, 2).reshape(b, h, w, c), *self.proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[-1]
        y = F.layer_norm(x, (c,), self.norm1_w, self.norm1_b, self.eps[0])
        if self.window > 0:
            y = _windows(y, self.window)
            y = _unwindows(self.attention(y), self.window, x.shape)
        else:
            y = self.attention(y)
        x = x + y
        y = F.layer_norm(x, (c,), self.norm2_w, self.norm2_b, self.eps[1])
        return x + F.linear(F.gelu(F.linear(y, *self.fc1)), *self.fc2)


def _linear(layer: nn.Linear, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    return _copy(layer.weight, dtype), _copy(layer.bias, dtype)


def _windows(x: torch.Tensor, size: int) -> torch.Tensor:
    b, h, w, c = x.shape
    pad_h, pad_w = (-h) % size, (-w) % size
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // size, size, wp // size, size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, size, size, c)


def _unwindows(x: torch.Tensor, size: int, shape: torch.Size) -> torch.Tensor:
    b, h, w, c = shape
    hp, wp = h + (-h) % size, w + (-w) % size
    x = x.view(b, hp // size, wp // size, size, size, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
    return x[:, :h, :w, :]


class FastImageEncoder(nn.Module):
    """Inference copy of a SAM ``ImageEncoderViT`` in ``dtype`` (see the module docstring).

    Args:
        encoder: the encoder whose weights are read (it is not modified or referenced afterwards).
        dtype: ``torch.float32`` or ``torch.bfloat16``.
    """

    def __init__(self, encoder: ImageEncoderViT, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        proj = encoder.patch_embed.proj
        if proj.kernel_size != proj.stride or proj.padding != (0, 0):
            raise ValueError("FastImageEncoder needs non-overlapping patches (kernel == stride, no padding)")
        self.dtype = dtype
        self.patch = proj.kernel_size
        self.register_buffer("patch_w", _copy(proj.weight.flatten(1), dtype))  # D x (3 * p * p), (c, i, j) order
        self.register_buffer("patch_b", _copy(proj.bias, dtype))
        self.register_buffer("pos_embed", _copy(encoder.pos_embed, dtype))
        grid = encoder.img_size // self.patch[0]
        self.blocks = nn.ModuleList(_Block(b, dtype, grid) for b in encoder.blocks)
        conv1, ln1, conv3, ln2 = encoder.neck
        self.register_buffer("neck1_w", _copy(conv1.weight.flatten(1), dtype))  # 1x1 conv as a matrix
        self.norms = [(ln1.eps, ln1.weight.shape[0]), (ln2.eps, ln2.weight.shape[0])]
        self.register_buffer("ln1_w", _copy(ln1.weight, dtype))
        self.register_buffer("ln1_b", _copy(ln1.bias, dtype))
        self.register_buffer("neck3_w", _copy(conv3.weight, dtype).contiguous(memory_format=torch.channels_last))
        self.neck3_padding = conv3.padding
        self.register_buffer("ln2_w", _copy(ln2.weight, dtype))
        self.register_buffer("ln2_b", _copy(ln2.bias, dtype))

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x 3 x S x S`` normalised input (any float dtype) -> ``B x C x S/p x S/p`` embedding in fp32."""
        b, c, s1, s2 = x.shape
        ph, pw = self.patch
        gh, gw = s1 // ph, s2 // pw
        patches = x.to(self.dtype).reshape(b, c, gh, ph, gw, pw).permute(0, 2, 4, 1, 3, 5).reshape(b, gh, gw, -1)
        x = F.linear(patches, self.patch_w, self.patch_b)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        (eps1, c1), (eps2, c2) = self.norms
        x = F.layer_norm(F.linear(x, self.neck1_w), (c1,), self.ln1_w, self.ln1_b, eps1)
        x = F.conv2d(x.permute(0, 3, 1, 2), self.neck3_w, padding=self.neck3_padding)  # channels-last view in
        x = F.layer_norm(x.permute(0, 2, 3, 1), (c2,), self.ln2_w, self.ln2_b, eps2)
        return x.permute(0, 3, 1, 2).float().contiguous()


class _Attention:
    """``segment_anything``'s two-way-transformer ``Attention`` through one fused attention kernel."""

    def __init__(self, attn, dtype: torch.dtype) -> None:
        self.heads = attn.num_heads
        self.q, self.k, self.v, self.out = (_linear(m, dtype) for m in (attn.q_proj, attn.k_proj, attn.v_proj,
                                                                         attn.out_proj))

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, nq, _ = q.shape
        nk = k.shape[1]
        q = F.linear(q, *self.q)
        width = q.shape[-1]
        q = q.view(b, nq, self.heads, -1).transpose(1, 2)
        k = F.linear(k, *self.k).view(b, nk, self.heads, -1).transpose(1, 2)
        v = F.linear(v, *self.v).view(b, nk, self.heads, -1).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v, as SAM's
        return F.linear(out.transpose(1, 2).reshape(b, nq, width), *self.out)


class FastMaskDecoder(nn.Module):
    """Inference form of TrackGPT's decoding step (paper Eq. 3), in the model's dtype: the referring mask decoder
    (SAM's two-way transformer, its output upscaling and first hypernetwork), the purport head or SAM's IoU head,
    and the referring propagation.

    Same inputs and outputs as :meth:`trackgpt.model.Perception.forward` (batch of one or more, inference only):
    ``(low_res_mask_logits, purport_scores, iou_predictions, next_query)``, returned in fp32. Attention runs
    through ``F.scaled_dot_product_attention``; the two 2x2 transposed convolutions of the upscaling are matrix
    products over channels-last tokens (no im2col, no layout changes between them). Layer norms, MLPs and heads are
    the perception's own modules.

    Args:
        perception: the :class:`trackgpt.model.Perception` whose weights are read (not modified).
    """

    def __init__(self, perception) -> None:
        super().__init__()
        dtype = perception.dtype
        sam = perception.sam
        dec = sam.mask_decoder
        tr = dec.transformer
        self.blocks = tr.layers  # the perception's own layers: their norms and MLPs run as they are
        self.attention = [
            {"self": _Attention(layer.self_attn, dtype), "t2i": _Attention(layer.cross_attn_token_to_image, dtype),
             "i2t": _Attention(layer.cross_attn_image_to_token, dtype)}
            for layer in tr.layers
        ]
        self.final = _Attention(tr.final_attn_token_to_image, dtype)
        self.norm_final = tr.norm_final_attn
        self.iou_token = _copy(dec.iou_token.weight, dtype)
        self.mask_tokens = _copy(dec.mask_tokens.weight, dtype)
        up1, ln, act1, up2, act2 = dec.output_upscaling
        # A 2x2 stride-2 transposed convolution is one product per pixel: C -> (2, 2, out), each input pixel making
        # its own 2x2 block. Both stay in that blocked layout ([.., i1, j1, i2, j2, ..]), so nothing is reordered
        # until the final one-channel mask.
        self.up = [(_copy(m.weight.permute(0, 2, 3, 1).flatten(1).t(), dtype).contiguous(), _copy(m.bias, dtype),
                    m.out_channels) for m in (up1, up2)]
        if up1.kernel_size != (2, 2) or up1.stride != (2, 2) or up2.kernel_size != (2, 2) or up2.stride != (2, 2):
            raise ValueError("FastMaskDecoder expects SAM's 2x2 stride-2 output upscaling")
        self.up_norm, self.up_acts = ln, (act1, act2)  # LayerNorm2d: applied over the channels-last tokens below
        self.hyper = dec.output_hypernetworks_mlps[0]
        self.iou_head = dec.iou_prediction_head
        self.purport = perception.purport_head.mlp if perception.purport_head is not None else None
        self.propagation = perception.propagation
        if self.propagation is not None:
            self.prop_self = _MultiheadAttention(self.propagation.self_attn, dtype)
            self.prop_cross = _MultiheadAttention(self.propagation.cross_attn, dtype)
        self.dtype = dtype
        self.image_pe = sam.image_pe().to(dtype).flatten(2).transpose(1, 2).contiguous()  # 1 x hw x C
        self.no_mask = _copy(sam.prompt_encoder.no_mask_embed.weight.reshape(1, 1, -1), dtype)  # dense prompt

    @torch.no_grad()
    def forward(self, image_embeddings, referring_query, online_query, purport_query):
        dt = self.dtype
        b, _c, h, w = image_embeddings.shape
        q_r, q_t, q_p = (q.to(dt) for q in (referring_query, online_query, purport_query))
        if self.purport is None:  # purport_source "iou": SAM's IoU token as it is
            q_p = torch.ones_like(q_r)
        image = image_embeddings.to(dt).flatten(2).transpose(1, 2).contiguous()  # b x hw x C (products fold to 2-D)
        prompts = [q_r, q_t] if self.propagation is not None else [q_r]
        tokens = torch.cat([(self.iou_token * q_p).unsqueeze(1), self.mask_tokens.unsqueeze(0).expand(b, -1, -1),
                            torch.stack(prompts, dim=1)], dim=1)
        pe = self.image_pe
        queries, keys = tokens, image + self.no_mask
        for layer, attn in zip(self.blocks, self.attention):
            if layer.skip_first_layer_pe:
                queries = attn["self"](queries, queries, queries)
            else:
                q = queries + tokens
                queries = queries + attn["self"](q, q, queries)
            queries = layer.norm1(queries)
            q, k = queries + tokens, keys + pe
            queries = layer.norm2(queries + attn["t2i"](q, k, keys))
            queries = layer.norm3(queries + layer.mlp(queries))
            q, k = queries + tokens, keys + pe
            keys = layer.norm4(keys + attn["i2t"](k, q, queries))
        queries = self.norm_final(queries + self.final(queries + tokens, keys + pe, keys))
        purport_token, mask_token = queries[:, 0], queries[:, 1]

        (w1, b1, o1), (w2, b2, o2) = self.up
        ln = self.up_norm
        x = F.linear(keys, w1).view(b, h * w * 4, o1)  # pixels (y, x, i1, j1)
        x = self.up_acts[0](F.layer_norm(x + b1, (o1,), ln.weight, ln.bias, ln.eps))
        x = F.linear(x, w2).view(b, h * w * 16, o2)  # pixels (y, x, i1, j1, i2, j2)
        x = self.up_acts[1](x + b2)
        hyper = self.hyper(mask_token)  # b x o2
        mask = (x @ hyper.unsqueeze(-1)).view(b, h, w, 2, 2, 2, 2)  # (y, x, i1, j1, i2, j2)
        # row 4y + 2 i1 + i2, column 4x + 2 j1 + j2
        mask_logits = mask.permute(0, 1, 3, 5, 2, 4, 6).reshape(b, 1, 4 * h, 4 * w)
        iou = self.iou_head(purport_token)[:, 0]
        scores = self.purport(purport_token).squeeze(-1) if self.purport is not None else iou.clamp(0, 1)
        if self.propagation is None:
            next_query = q_r
        else:
            p = self.propagation
            q = q_t.unsqueeze(1)
            both = torch.cat([q, q_r.unsqueeze(1)], dim=1)
            q = p.norm1(q + self.prop_self(both, both, both)[:, :1])
            q = p.norm2(q + self.prop_cross(q, image + pe, image))
            next_query = p.adapter(q).squeeze(1)
        return mask_logits.float(), scores.float(), iou.float(), next_query.float()


class _MultiheadAttention(_Attention):  # nn.MultiheadAttention (batch_first) with a packed in-projection
    def __init__(self, mha: nn.MultiheadAttention, dtype: torch.dtype) -> None:
        if not mha.batch_first or mha.in_proj_weight is None:
            raise ValueError("FastMaskDecoder expects batch-first attention with a packed in-projection")
        self.heads = mha.num_heads
        wq, wk, wv = mha.in_proj_weight.detach().chunk(3)
        bq, bk, bv = mha.in_proj_bias.detach().chunk(3)
        self.q, self.k, self.v = ((w.to(dtype), bb.to(dtype)) for w, bb in ((wq, bq), (wk, bk), (wv, bv)))
        self.out = _linear(mha.out_proj, dtype)


def _resize_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """``n_out x n_in``: bilinear resizing along one axis (``align_corners=False``) as a matrix, built by resizing
    the unit vectors with ``F.interpolate`` itself."""
    eye = torch.eye(n_in, dtype=torch.float64).unsqueeze(1)  # n_in signals of length n_in
    return F.interpolate(eye, size=(n_out,), mode="linear", align_corners=False)[:, 0, :].t()


class FastPostprocess:
    """``SamTransform.postprocess`` (upsample the low-resolution logits to ``img_size``, crop the padding, resize to
    the frame) as two matrix products per mask: bilinear resizing is separable and linear, so the whole chain is
    ``rows @ logits @ cols^T`` with one fixed matrix per axis (built once per frame size). Same logits to float
    rounding (tested); on a 640 x 480 frame about 0.25 ms against 0.65 ms on one CPU thread.
    """

    def __init__(self, img_size: int, *, sizes: int = 4) -> None:
        self.img_size = img_size
        self.sizes = sizes
        self._matrices: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    def _axes(self, low: tuple[int, int], input_size: tuple[int, int], original_size: tuple[int, int], device):
        key = (low, tuple(input_size), tuple(original_size), device)
        if key not in self._matrices:
            axes = []
            for n_low, n_in, n_out in zip(low, input_size, original_size):
                up = _resize_matrix(n_low, self.img_size)[:n_in]  # to img_size, padding cropped
                axes.append((_resize_matrix(n_in, n_out) @ up).float().to(device))
            self._matrices[key] = (axes[0], axes[1])
            while len(self._matrices) > self.sizes:
                self._matrices.popitem(last=False)
        return self._matrices[key]

    def __call__(self, low_res_logits: torch.Tensor, input_size, original_size) -> torch.Tensor:
        """``B x 1 x h' x w'`` logits -> ``B x 1 x H x W`` float32, as ``SamTransform.postprocess``."""
        rows, cols = self._axes(tuple(low_res_logits.shape[-2:]), input_size, original_size, low_res_logits.device)
        return rows @ low_res_logits.float() @ cols.t()
