"""The GemNet-OC backbone: bases -> interaction blocks -> per-atom and per-edge output features."""

from __future__ import annotations

import torch
from torch import nn

from ..config import GemNetOCConfig
from .bases import Bases, take
from .interaction import InteractionBlock
from .output import FinalMLP, OutputBlock

__all__ = ["GemNetOCBackbone", "edge_geometry"]


def edge_geometry(pos: torch.Tensor, cell: torch.Tensor, batch: torch.Tensor, index: torch.Tensor,
                  offset: torch.Tensor, shift_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances (E,) and unit vectors (E, 3) from source image to target: ``pos[t] - pos[s] - offset @ cell``.

    Computed in float64 whatever the model precision (cheap, and it keeps float32 models accurate in large or
    strongly skewed cells), then cast to the dtype of ``pos``; gradients flow through the casts.
    ``shift_dtype=torch.float32`` computes ``offset @ cell`` in float32 as the original JMP code does even in
    float64 runs (a ~1e-7 A difference in non-orthogonal cells); only useful to reproduce it bit for bit.
    """
    s, t = index[0], index[1]
    p = pos.to(torch.float64)
    vec = p[t] - p[s]
    if offset.shape[0]:
        dt = shift_dtype or torch.float64
        shift = torch.bmm(offset.to(dt).unsqueeze(1), cell[batch[t]].to(dt)).squeeze(1)
        vec = vec - shift.to(torch.float64)
    d = torch.linalg.vector_norm(vec, dim=-1)
    return d.to(pos.dtype), (vec / d[:, None]).to(pos.dtype)


class GemNetOCBackbone(nn.Module):
    """Maps atom embeddings ``h`` (N, A) and a :class:`~jmp_calc.graph.GraphBatch` to energy features (N, A) and
    (with direct forces) edge force features (E_main, E) plus the main-graph geometry the force heads need."""

    def __init__(self, cfg: GemNetOCConfig):
        super().__init__()
        self.cfg = cfg
        #: set to torch.float32 to reproduce the original code's float32 image shifts exactly (see edge_geometry)
        self.shift_dtype: torch.dtype | None = None
        self.bases = Bases(cfg)
        self.int_blocks = nn.ModuleList([InteractionBlock(cfg) for _ in range(cfg.num_blocks)])
        self.out_blocks = nn.ModuleList([
            OutputBlock(cfg.emb_size_atom, cfg.emb_size_edge, cfg.emb_size_rbf, cfg.num_atom,
                        cfg.num_output_afteratom, act=cfg.activation, direct_forces=cfg.direct_forces,
                        dropout=cfg.dropout, edge_dropout=cfg.edge_dropout)
            for _ in range(cfg.num_blocks + 1)
        ])
        self.out_mlp_E = FinalMLP(cfg.emb_size_atom, cfg.num_blocks, cfg.num_global_out_layers,
                                  act=cfg.activation)
        if cfg.direct_forces:
            self.out_mlp_F = FinalMLP(cfg.emb_size_edge, cfg.num_blocks, cfg.num_global_out_layers,
                                      act=cfg.activation, dropout=cfg.dropout)

    def geometry(self, g, pos: torch.Tensor, cell: torch.Tensor) -> dict:
        """(distance, unit vector) of every graph. The three capped graphs are selections of the a2a graph: the
        geometry of the batch's edge union (``g.geo_index``) is computed once and indexed per graph, which keeps
        the gradient path (the backward pass sums each graph's contributions onto the shared edges)."""
        graphs = (("main", g.main), ("a2ee2a", g.a2ee2a), ("qint", g.qint), ("a2a", g.a2a))
        if getattr(g, "geo_index", None) is None:
            return {name: edge_geometry(pos, cell, g.batch, es.index, es.offset, self.shift_dtype)
                    for name, es in graphs}
        d, v = edge_geometry(pos, cell, g.batch, g.geo_index, g.geo_offset, self.shift_dtype)
        # es.geo None: the graph's edges are the union's first ones (a2a)
        return {name: (d[:es.index.shape[1]], v[:es.index.shape[1]]) if es.geo is None
                else (take(d, es.geo), take(v, es.geo)) for name, es in graphs}

    def forward(self, h: torch.Tensor, g, pos: torch.Tensor | None = None, cell: torch.Tensor | None = None,
                forces: bool = True) -> dict:
        """``pos``/``cell`` default to the batch's; pass differentiable ones for gradient forces or stress.
        ``forces=False`` skips the direct-force branch (a third of the work) when only energies are needed."""
        forces = forces and self.cfg.direct_forces
        geo = self.geometry(g, g.pos if pos is None else pos, g.cell if cell is None else cell)
        bases = self.bases(h, geo, g)
        m = bases["m"]
        idx_t = g.main.index[1]
        x_e, x_f = self.out_blocks[0](h, m, bases["output"], idx_t, forces)
        xs_e, xs_f = [x_e], [x_f]
        for block, out_block in zip(self.int_blocks, self.out_blocks[1:]):
            h, m = block(h, m, bases, g)
            x_e, x_f = out_block(h, m, bases["output"], idx_t, forces)
            xs_e.append(x_e)
            xs_f.append(x_f)
        out = {
            "energy_features": self.out_mlp_E(torch.cat(xs_e, dim=-1)),
            "distance": geo["main"][0],
            "unit_vector": geo["main"][1],
        }
        if forces:
            out["force_features"] = self.out_mlp_F(torch.cat(xs_f, dim=-1))
        return out
