"""Atom update and output blocks of GemNet-OC, and the final per-atom / per-edge MLPs."""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import Dense, ResidualLayer, ScaleFactor, const

__all__ = ["AtomUpdateBlock", "OutputBlock", "FinalMLP"]


def _mlp(units_in: int, units: int, n_residual: int, act: str, dropout: float | None) -> nn.ModuleList:
    layers: list[nn.Module] = [Dense(units_in, units, act=act, dropout=dropout)] if units_in != units else []
    layers += [ResidualLayer(units, act=act, dropout=dropout) for _ in range(n_residual)]
    return nn.ModuleList(layers)


class AtomUpdateBlock(nn.Module):
    """Sum of edge embeddings (weighted by a radial basis) onto target atoms, then an MLP to atom width."""

    def __init__(self, emb_atom: int, emb_edge: int, emb_rbf: int, n_hidden: int, *, act: str,
                 dropout: float | None = None):
        super().__init__()
        self.dense_rbf = Dense(emb_rbf, emb_edge, dropout=dropout)
        self.scale_sum = ScaleFactor()
        self.layers = _mlp(emb_edge, emb_atom, n_hidden, act, dropout)

    def aggregate(self, m: torch.Tensor, rad: torch.Tensor, idx_t: torch.Tensor, n_atoms: int,
                  keep_prob: float = 1.0) -> torch.Tensor:
        """Sum of ``m * W rad`` over the edges ending at each atom, divided by ``keep_prob`` (edge dropout)."""
        x = m * self.dense_rbf(rad)
        out = x.new_zeros((n_atoms, x.shape[1])).index_add_(0, idx_t, x)
        if keep_prob != 1.0:
            out = out / keep_prob
        return self.scale_sum(out, ref=m)

    def forward(self, h, m, rad, idx_t):
        x = self.aggregate(m, rad, idx_t, h.shape[0])
        for layer in self.layers:
            x = layer(x)
        return x


class OutputBlock(AtomUpdateBlock):
    """Per-block output: atom features for energies and (direct forces) edge features for forces."""

    def __init__(self, emb_atom: int, emb_edge: int, emb_rbf: int, n_hidden: int, n_hidden_afteratom: int, *,
                 act: str, direct_forces: bool, dropout: float | None = None, edge_dropout: float | None = None):
        super().__init__(emb_atom, emb_edge, emb_rbf, n_hidden, act=act, dropout=dropout)
        self.edge_dropout = edge_dropout
        self.seq_energy2 = _mlp(emb_atom, emb_atom, n_hidden_afteratom, act, dropout) if n_hidden_afteratom else None
        self.direct_forces = direct_forces
        if direct_forces:
            self.scale_rbf_F = ScaleFactor()
            self.seq_forces = _mlp(emb_edge, emb_edge, n_hidden, act, dropout)
            self.dense_rbf_F = Dense(emb_rbf, emb_edge, dropout=dropout)

    def forward(self, h, m, rad, idx_t, forces: bool = True):
        # edges were dropped from the a2a graph while training: boost the sum to keep its expectation
        keep = 1.0 - self.edge_dropout if self.training and self.edge_dropout else 1.0
        x_e = self.aggregate(m, rad, idx_t, h.shape[0], keep)
        for layer in self.layers:
            x_e = layer(x_e)
        if self.seq_energy2 is not None:
            x_e = (x_e + h) * const(1.0 / math.sqrt(2.0), h)
            for layer in self.seq_energy2:
                x_e = layer(x_e)
        if not (self.direct_forces and forces):
            return x_e, None
        x_f = m
        for layer in self.seq_forces:
            x_f = layer(x_f)
        x_f = self.scale_rbf_F(x_f * self.dense_rbf_F(rad), ref=x_f)
        return x_e, x_f


class FinalMLP(nn.Module):
    """Dense from the concatenated per-block outputs, then residual layers (``out_mlp.*``)."""

    def __init__(self, emb: int, num_blocks: int, num_layers: int, *, act: str, dropout: float | None = None):
        super().__init__()
        self.out_mlp = nn.Sequential(
            Dense(emb * (num_blocks + 1), emb, act=act, dropout=dropout),
            *[ResidualLayer(emb, act=act, dropout=dropout) for _ in range(num_layers)],
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_mlp(x)
