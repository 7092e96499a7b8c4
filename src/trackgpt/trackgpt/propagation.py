"""Cross-frame referring propagation (paper Sec. 3.4, Fig. 3).

The online query Q_t self-attends together with the referring query Q_R,
cross-attends to the frame's image features f_t, and a 3-layer MLP adapter
turns the result into Q_{t+1} for the next frame.

Choices the paper leaves open:

* pre-attention tokens: the self-attention runs over the two tokens
  ``[Q_t, Q_R]`` and only Q_t's output is kept (Q_R stays fixed between
  reasoning rounds);
* residual connections and LayerNorm after each attention (as in SAM's
  two-way transformer); the keys of the cross-attention are ``f_t`` plus SAM's
  dense positional encoding, the values ``f_t``;
* the adapter has no residual: Q_{t+1} = MLP(Q_t'), literally "passing by a
  3-layer MLP adapter";
* the first online query after each (re)reasoning is Q_0 = Q_R
  (see :class:`trackgpt.tracker.OnlineTracker`).
"""

from __future__ import annotations

import torch
from segment_anything.modeling.mask_decoder import MLP
from torch import nn


class ReferringPropagation(nn.Module):
    """Q_t, Q_R, f_t -> Q_{t+1}.

    Args:
        dim: query / feature width C (SAM's prompt dimension).
        num_heads: attention heads (``dim`` must be divisible by it).
        adapter_hidden_dim: hidden width of the 3-layer MLP adapter.
        adapter_depth: layers of the adapter (3 in the paper).
    """

    def __init__(self, *, dim: int, num_heads: int, adapter_hidden_dim: int, adapter_depth: int = 3) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.adapter = MLP(dim, adapter_hidden_dim, dim, adapter_depth)

    def forward(
        self,
        *,
        online_query: torch.Tensor,
        referring_query: torch.Tensor,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
    ) -> torch.Tensor:
        """Propagate the online query to the next frame.

        Args:
            online_query: ``B x C`` Q_t.
            referring_query: ``B x C`` Q_R.
            image_embeddings: ``B x C x h x w`` f_t.
            image_pe: ``1 x C x h x w`` positional encoding of f_t.

        Returns:
            ``B x C`` Q_{t+1}.
        """
        q = online_query.unsqueeze(1)
        tokens = torch.cat([q, referring_query.unsqueeze(1).to(q.dtype)], dim=1)
        attended, _ = self.self_attn(tokens, tokens, tokens, need_weights=False)
        q = self.norm1(q + attended[:, :1])

        b = image_embeddings.shape[0]
        values = image_embeddings.flatten(2).transpose(1, 2)  # B x hw x C
        keys = values + image_pe.flatten(2).transpose(1, 2).expand(b, -1, -1)
        attended, _ = self.cross_attn(q, keys, values, need_weights=False)
        q = self.norm2(q + attended)
        return self.adapter(q).squeeze(1)
