"""phi: the MLP projection from the brain's hidden states to the decoder's queries (paper Sec. 3.3).

Q_R = phi(h_<TK>) and Q_p = phi(h_<PO>), where h is the brain's last-layer
hidden state that predicts the token. The paper says Q_p "is also generated in
the same way"; we read that as one shared phi for both tokens.

Optionally (``TrackGPTConfig.projection_input_norm``, a DEVIATION used by the embedded model) phi first
standardises each input dimension with running statistics (``BatchNorm1d`` without affine terms): a small
brain's states share one dominant direction (mean cosine 0.98 between instructions), and the MLP learned to
read them only once they were standardised (measured: see ``trackgpt.config``).
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
        input_norm: standardise the input per dimension with running statistics first (see the module docstring).
    """

    def __init__(self, *, hidden_size: int, out_dim: int, depth: int = 3, input_norm: bool = False) -> None:
        super().__init__()
        self.input_norm = nn.BatchNorm1d(hidden_size, affine=False) if input_norm else None
        layers: list[nn.Module] = []
        for i in range(depth):
            last = i == depth - 1
            layers.append(nn.Linear(hidden_size, out_dim if last else hidden_size))
            if not last:
                layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``B x H`` -> ``B x out_dim``."""
        x = hidden.to(self.layers[0].weight.dtype)
        if self.input_norm is not None:
            norm = self.input_norm
            batch_stats = norm.training and x.shape[0] > 1  # one state: the running statistics
            x = nn.functional.batch_norm(
                x, norm.running_mean, norm.running_var, training=batch_stats, momentum=norm.momentum, eps=norm.eps
            )
            if batch_stats:
                norm.num_batches_tracked += 1
        return self.layers(x)
