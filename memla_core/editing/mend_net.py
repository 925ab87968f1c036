"""MEND's hypernetwork (Mitchell et al. 2022, "Fast Model Editing at Scale", §3).

For a linear layer the fine-tuning gradient is a sum of rank-1 terms, ∇_W L = Σ_t δ_t u_tᵀ
(u_t the layer's input at token t, δ_t the loss gradient at its output). MEND never builds the
gradient: it maps every pair (u_t, δ_t) to a pseudo pair (ũ_t, δ̃_t) with a small MLP and
writes ΔW = −η_l Σ_t δ̃_t ũ_tᵀ, with a learned step η_l per edited weight.

The MLP, as in the paper and its reference code:
- its input is [u; δ] (the "combined" variant), each coordinate standardised by a running mean
  and variance gathered while training and frozen afterwards (δ of a mean NLL is tiny and u is
  large: without this the two halves would live on scales 10⁴ apart);
- it has ``n_hidden + 1`` low-rank layers x ↦ x + act((U V x + b)·s_m + o_m), U initialised to
  zero so the untrained network is the identity (then ΔW starts as a plain normalised gradient
  step);
- one network per weight *shape*, shared by the weights of that shape in every edited layer,
  with a per-weight scale s_m and shift o_m (the "mode") telling them apart.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


class LowRankResidual(nn.Module):
    """x + act((U V x + b) · scale[mode] + shift[mode]), U: [d, r], V: [r, d]; identity at init."""

    def __init__(self, dim: int, rank: int, n_modes: int, relu: bool):
        super().__init__()
        self.u = nn.Parameter(torch.zeros(dim, rank))  # zero: the layer starts as the identity
        self.v = nn.Parameter(torch.empty(rank, dim))
        nn.init.kaiming_uniform_(self.v, a=math.sqrt(5))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.mode_scale = nn.Parameter(torch.ones(n_modes, dim))
        self.mode_shift = nn.Parameter(torch.zeros(n_modes, dim))
        self.relu = relu

    def forward(self, x: torch.Tensor, mode: int) -> torch.Tensor:
        pre = (x @ self.v.T) @ self.u.T + self.bias
        pre = pre * self.mode_scale[mode] + self.mode_shift[mode]
        return x + (pre.clamp_min(0) if self.relu else pre)


class RunningStandardiser(nn.Module):
    """Per-coordinate running mean and variance (Welford), updated only when asked."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(dim, dtype=torch.float64))

    @torch.no_grad()
    def update(self, rows: torch.Tensor) -> None:
        """Add ``rows`` [n, dim] to the statistics (Chan et al.'s batched Welford update)."""
        rows = rows.detach().double()
        n = rows.shape[0]
        if n == 0:
            return
        batch_mean = rows.mean(0)
        batch_m2 = ((rows - batch_mean) ** 2).sum(0)
        total = self.count + n
        diff = batch_mean - self.mean
        self.mean += diff * n / total
        self.m2 += batch_m2 + diff**2 * self.count * n / total
        self.count.fill_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.count < 2:
            raise RuntimeError("MEND's input statistics hold fewer than 2 tokens; the hypernetwork was not trained.")
        std = (self.m2 / (self.count - 1)).sqrt().to(x.dtype)
        return (x - self.mean.to(x.dtype)) / (std + 1e-7)


class GradientTransform(nn.Module):
    """The editor network of one weight shape: (u [T, d_in], δ [T, d_out]) -> (ũ, δ̃)."""

    def __init__(self, d_in: int, d_out: int, rank: int, n_hidden: int, n_modes: int):
        super().__init__()
        self.d_in, self.d_out = d_in, d_out
        dim = d_in + d_out
        self.standardise = RunningStandardiser(dim)
        self.layers = nn.ModuleList(
            LowRankResidual(dim, min(rank, dim), n_modes, relu=i < n_hidden) for i in range(n_hidden + 1)
        )

    def forward(self, u: torch.Tensor, delta: torch.Tensor, mode: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.standardise(torch.cat([u.float(), delta.float()], dim=-1))
        for layer in self.layers:
            x = layer(x, mode)
        return x[:, : self.d_in], x[:, self.d_in :]


def shape_key(d_in: int, d_out: int) -> str:
    return f"{d_in}x{d_out}"


class MendHypernetwork(nn.Module):
    """Editor networks for a list of weights, each given as (name, d_in, d_out), shared by shape,
    and one learned step size η per weight."""

    def __init__(self, weights: Sequence[tuple[str, int, int]], rank: int, n_hidden: int, edit_lr: float):
        super().__init__()
        self.names = [name for name, _, _ in weights]
        groups: dict[str, list[str]] = {}
        dims: dict[str, tuple[int, int]] = {}
        for name, d_in, d_out in weights:
            key = shape_key(d_in, d_out)
            groups.setdefault(key, []).append(name)
            dims[key] = (d_in, d_out)
        self.route = {name: (key, names.index(name)) for key, names in groups.items() for name in names}
        self.nets = nn.ModuleDict(
            {key: GradientTransform(*dims[key], rank, n_hidden, n_modes=len(names)) for key, names in groups.items()}
        )
        self.edit_lrs = nn.Parameter(torch.full((len(self.names),), float(edit_lr)))

    def update_statistics(self, factors: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        for name, (u, delta) in factors.items():
            key, _ = self.route[name]
            self.nets[key].standardise.update(torch.cat([u.float(), delta.float()], dim=-1))

    def pseudo_gradients(self, factors: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """name -> −η Σ_t δ̃_t ũ_tᵀ, [d_out, d_in] (the update, not yet in the weight's layout)."""
        updates = {}
        for name, (u, delta) in factors.items():
            key, mode = self.route[name]
            u_t, delta_t = self.nets[key](u, delta, mode)
            updates[name] = -self.edit_lrs[self.names.index(name)] * (delta_t.T @ u_t)
        return updates
