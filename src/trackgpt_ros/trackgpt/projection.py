"""phi: the MLP projection from the brain's hidden states to the decoder's queries (paper Sec. 3.3).

Q_R = phi(h_<TK>) and Q_p = phi(h_<PO>), where h is the brain's last-layer
hidden state that predicts the token. The paper says Q_p "is also generated in
the same way"; we read that as one shared phi for both tokens.
"""

from __future__ import annotations

import torch
from torch import nn


class ReferringProjection(nn.Module):
    """A ``depth``-layer MLP (ReLU between layers) from ``hidden_size`` to ``out_dim``.

    The hidden layers keep the brain's width (LISA: Linear(H, H) -> ReLU -> Linear(H, 256); the paper
    makes it 3 layers: H -> H -> H -> 256).

    Args:
        hidden_size: the brain's hidden size H (4096 for LLaVA-7B).
        out_dim: the decoder's prompt dimension (256 for SAM).
        depth: number of linear layers.
    """

    def __init__(self, *, hidden_size: int, out_dim: int, depth: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            last = i == depth - 1
            layers.append(nn.Linear(hidden_size, out_dim if last else hidden_size))
            if not last:
                layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``B x H`` -> ``B x out_dim``."""
        return self.layers(hidden.to(self.layers[0].weight.dtype))
