"""GemNet-OC message passing: triplet (edge-edge, atom-edge, edge-atom), quadruplet and atom-atom interactions,
and the interaction block that merges them.

Shapes: N atoms, E main edges, E2 a2ee2a edges, T triplets, Q quadruplets. Aggregation over triplets/quadruplets
uses GemNet's "efficient bilinear" trick: neighbour embeddings are placed in a zero-padded (E, K, C) tensor and
contracted with the padded basis by batched matmul, which is faster than scatter on CPU and GPU alike.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import layers
from .bases import EdgeEmbedding, QuadBasis, flat_index, gather_padded, take
from .layers import Dense, ResidualLayer, ScaleFactor, const, recomputed
from .output import AtomUpdateBlock

__all__ = ["EfficientBilinear", "TripletInteraction", "QuadrupletInteraction", "PairInteraction", "InteractionBlock"]

_INV_SQRT2 = 1.0 / math.sqrt(2.0)


class EfficientBilinear(nn.Module):
    """``out_e = W vec(sum_k rad_e[:, s] sph_e[s, k] x_k)``: bilinear layer fused with the sum over neighbours."""

    def __init__(self, emb_in: int, emb_interm: int, emb_out: int, *, dropout: float | None = None):
        super().__init__()
        self.bilinear = Dense(emb_in * emb_interm, emb_out, dropout=dropout)

    def forward(self, basis, x: torch.Tensor, pad_in: torch.Tensor, agg2: torch.Tensor | None = None,
                slots: int = 0) -> torch.Tensor:
        """``x`` (M, emb_in) input rows, ``pad_in`` (E, K) the input row of each neighbour slot (sentinel M);
        ``agg2`` (N, K2): slot table of a second aggregation from output edges onto atoms; ``slots``: the call's
        size (:attr:`~jmp_calc.graph.batch.GraphBatch.padded_slots`), large calls recompute the aggregation."""
        rad, sph = basis  # (E, emb_interm, S) or (N, emb_interm, K2*S);  (E, S, K)

        def aggregate(rad, sph, x):
            sph_x = sph @ gather_padded(x, pad_in)  # (E, S, emb_in)
            if agg2 is not None:  # second aggregation: edges -> atoms
                sph_x = gather_padded(sph_x, agg2)  # (N, K2, S, emb_in)
                sph_x = sph_x.reshape(agg2.shape[0], agg2.shape[1] * sph_x.shape[2], sph_x.shape[3])
            y = rad @ sph_x  # (R, emb_interm, emb_in)
            return y.reshape(y.shape[0], y.shape[1] * y.shape[2])

        return self.bilinear(recomputed(aggregate, rad, sph, x, slots=slots))


class TripletInteraction(nn.Module):
    """Messages from (edge or atom) b->a into edge c->a, weighted by distance and the angle cab."""

    def __init__(self, emb_in: int, emb_out: int, emb_trip_in: int, emb_trip_out: int, emb_rbf: int, emb_cbf: int,
                 *, symmetric: bool, swap_output: bool, act: str, dropout: float | None = None):
        super().__init__()
        self.symmetric = symmetric
        self.swap_output = swap_output
        self.dense_ba = Dense(emb_in, emb_in, act=act, dropout=dropout)
        self.mlp_rbf = Dense(emb_rbf, emb_in, dropout=dropout)
        self.scale_rbf = ScaleFactor()
        self.mlp_cbf = EfficientBilinear(emb_trip_in, emb_cbf, emb_trip_out, dropout=dropout)
        self.scale_cbf_sum = ScaleFactor()
        self.down_projection = Dense(emb_in, emb_trip_in, act=act, dropout=dropout)
        self.up_projection_ca = Dense(emb_trip_out, emb_out, act=act, dropout=dropout)
        if symmetric:
            self.up_projection_ac = Dense(emb_trip_out, emb_out, act=act, dropout=dropout)

    def forward(self, m, bases, trip, id_swap, expand_idx=None, agg2=None, slots: int = 0):
        x_ba = self.dense_ba(m)
        if expand_idx is not None:
            x_ba = x_ba[expand_idx]
        x_ba = self.scale_rbf(x_ba * self.mlp_rbf(bases["rad"]), ref=x_ba)
        x_ba = self.down_projection(x_ba)
        x = self.mlp_cbf(bases["cir"], x_ba, trip.pad_in, agg2=agg2, slots=slots)
        x = self.scale_cbf_sum(x, ref=lambda: x_ba[trip.inp])
        if self.symmetric:
            return _symmetric_up(self.up_projection_ca, self.up_projection_ac, x, id_swap)
        if self.swap_output:
            x = x[id_swap]
        return self.up_projection_ca(x)


class QuadrupletInteraction(nn.Module):
    """Messages along d->b->a into edge c->a, weighted by distances, two angles and the dihedral cabd."""

    def __init__(self, emb_edge: int, emb_quad_in: int, emb_quad_out: int, emb_rbf: int, emb_cbf: int,
                 emb_sbf: int, *, act: str, dropout: float | None = None):
        super().__init__()
        self.dense_db = Dense(emb_edge, emb_edge, act=act, dropout=dropout)
        self.mlp_rbf = Dense(emb_rbf, emb_edge, dropout=dropout)
        self.scale_rbf = ScaleFactor()
        self.mlp_cbf = Dense(emb_cbf, emb_quad_in, dropout=dropout)
        self.scale_cbf = ScaleFactor()
        self.mlp_sbf = EfficientBilinear(emb_quad_in, emb_sbf, emb_quad_out, dropout=dropout)
        self.scale_sbf_sum = ScaleFactor()
        self.down_projection = Dense(emb_edge, emb_quad_in, act=act, dropout=dropout)
        self.up_projection_ca = Dense(emb_quad_out, emb_edge, act=act, dropout=dropout)
        self.up_projection_ac = Dense(emb_quad_out, emb_edge, act=act, dropout=dropout)

    def forward(self, m, bases, quad, id_swap, slots: int = 0):
        x_db = self.dense_db(m)
        x_db = self.scale_rbf(x_db * self.mlp_rbf(bases["rad"]), ref=x_db)
        x_db = take(self.down_projection(x_db), quad.tin_in)  # (T_in, C)
        x_db = self.scale_cbf(x_db * self.mlp_cbf(bases["cir"]), ref=x_db)
        if isinstance(bases["sph"], QuadBasis):  # large system: chunked and recomputed
            x = self.mlp_sbf.bilinear(_chunked_quad_aggregate(bases["sph"], x_db, quad))
            x = self.scale_sbf_sum(x, ref=lambda: x_db[quad.trip_in_to_quad])
            return _symmetric_up(self.up_projection_ca, self.up_projection_ac, x, id_swap)
        rad, y_cab, y_dih = bases["sph"]

        def aggregate(rad, y_cab, y_dih, x_db):
            return _slot_aggregate(rad, y_cab, y_dih, gather_padded(x_db, quad.pad_in), quad.pad_e)

        x = self.mlp_sbf.bilinear(recomputed(aggregate, rad, y_cab, y_dih, x_db, slots=slots))
        x = self.scale_sbf_sum(x, ref=lambda: x_db[quad.trip_in_to_quad])
        return _symmetric_up(self.up_projection_ca, self.up_projection_ac, x, id_swap)


def _slot_aggregate(rad, y_cab, y_dih, x_in, pad_e):
    """(E, emb_sbf * C): sum over the quadruplets q of each main edge e of Y_l1(cab_j) Y_l2(dih_q) x_q, factorised
    as sum_j Y_l1(cab_j) [sum_{q in j} Y_l2(dih_q) x_q] (~4x fewer flops than an (E, ns^2, K) basis). The inner sum
    runs per qint edge b->a, whose output triplets j all meet the same input triplets: one (M ns, K) x (K, C)
    product per grid row (a tile of a qint edge's output triplets; ``y_dih`` (R, M, ns, K), zero off the
    quadruplets; ``x_in`` (R, K, C)) instead of one (ns, K) x (K, C) product per output triplet over K copies of
    the inputs. ``pad_e`` (E, K_e): the output slots of each main edge, sentinel R * M; ``y_cab`` (E, ns, K_e);
    ``rad`` (E, emb_sbf, ns^2)."""
    n_rows, m, ns, k = y_dih.shape
    c = x_in.shape[2]
    z = y_dih.reshape(n_rows, m * ns, k) @ x_in  # (R, M ns, C)
    zz = gather_padded(z.reshape(n_rows * m, ns * c), pad_e)  # (E, K_e, ns*C)
    sph_x = (y_cab @ zz).reshape(zz.shape[0], ns * ns, c)  # (E, ns^2, C), index l1*ns + l2
    y = rad @ sph_x  # (E, emb_sbf, C)
    return y.reshape(y.shape[0], y.shape[1] * y.shape[2])


def _chunked_quad_aggregate(sph: QuadBasis, x_db: torch.Tensor, quad) -> torch.Tensor:
    """(E, emb_sbf * C): :func:`_slot_aggregate` over ranges of atoms a, each with its main edges c->a and the grid
    rows of its qint edges b->a (both consecutive: edges are sorted by target) and about
    :data:`~jmp_calc.model.layers.CHUNK_ELEMENTS` padded elements, each range recomputed in backward (its own
    checkpoint, building its own dihedral basis and radial weights), so that neither the padded tensors nor their
    gradients ever exist for the whole system. Row by row the same arithmetic as the unchunked path."""
    n_rows, m, k = quad.keep.shape
    n_atoms = quad.atom_rows.shape[0] - 1
    ends = torch.cumsum(torch.diff(quad.atom_rows.long()), 0) * max(1, m * k * x_db.shape[1])
    total = int(ends[-1]) if n_atoms else 0
    step = layers.CHUNK_ELEMENTS
    targets = torch.arange(step, max(step, total), step, device=ends.device)  # (empty for a single chunk)
    cuts = torch.searchsorted(ends, targets, right=True)
    a_bounds = [0] + sorted(set(int(c) for c in cuts.tolist()) - {0, n_atoms}) + [n_atoms]
    q_bounds = [int(quad.atom_rows[a]) for a in a_bounds]
    e_bounds = [int(quad.atom_main[a]) for a in a_bounds]
    e_sizes = [b - a for a, b in zip(e_bounds[:-1], e_bounds[1:])]
    x_ext = torch.cat([x_db, x_db.new_zeros(1, x_db.shape[1])])
    # one split per input (one backward node gathering the chunks' gradients), not a slice per chunk
    rbf_c, ycab_c = sph.rbf.split(e_sizes), sph.y_cab.split(e_sizes)
    cross_c = sph.cross_ca.split([m * (b - a) for a, b in zip(q_bounds[:-1], q_bounds[1:])])
    out = []
    for i in range(len(e_sizes)):
        q0, q1, e0, e1 = q_bounds[i], q_bounds[i + 1], e_bounds[i], e_bounds[i + 1]
        pad_e = quad.pad_e[e0:e1]
        pad_e = torch.where(pad_e >= n_rows * m, (q1 - q0) * m, pad_e - q0 * m)  # the chunk's slots, its own sentinel

        def fn(rbf, y_cab, cross_ca, cross_db_ext, cross_db2_ext, x_ext, pad_in=quad.pad_in[q0:q1],
               keep=quad.keep[q0:q1], pad_e=pad_e):
            y_dih = sph.dihedral(cross_ca, cross_db_ext, cross_db2_ext, pad_in, keep)  # (R_c, M, ns, K)
            x_in = torch.index_select(x_ext, 0, flat_index(pad_in)).reshape(tuple(pad_in.shape) + (x_ext.shape[1],))
            return _slot_aggregate(sph.embed.radial(rbf), y_cab, y_dih, x_in, pad_e)

        out.append(recomputed(fn, rbf_c[i], ycab_c[i], cross_c[i], sph.cross_db_ext, sph.cross_db2_ext, x_ext,
                              force=True))
    return out[0] if len(out) == 1 else torch.cat(out)


def _symmetric_up(up_ca: Dense, up_ac: Dense, x: torch.Tensor, id_swap: torch.Tensor) -> torch.Tensor:
    """``(up_ca(x) + up_ac(x)[id_swap]) / sqrt(2)``: messages of c->a and of its reverse, one matmul for both."""
    out = up_ca.linear.weight.shape[0]
    y = up_ca.act(x @ torch.cat([up_ca.linear.weight, up_ac.linear.weight]).T)
    y = up_ca.dropout(y)  # same dropout module type for both; identity at inference
    return (y[:, :out] + y[id_swap, out:]).mul_(const(_INV_SQRT2, y))


class PairInteraction(nn.Module):
    """Atom-atom messages over the a2a graph, weighted by distance only."""

    def __init__(self, emb_atom: int, emb_in: int, emb_out: int, emb_rbf: int, *, act: str,
                 dropout: float | None = None):
        super().__init__()
        self.bilinear = Dense(emb_rbf * emb_in, emb_out, dropout=dropout)
        self.scale_rbf_sum = ScaleFactor()
        self.down_projection = Dense(emb_atom, emb_in, act=act, dropout=dropout)
        self.up_projection = Dense(emb_out, emb_atom, act=act, dropout=dropout)

    def forward(self, h, rad, a2a):
        n = h.shape[0]
        x_b = self.down_projection(h)
        x_ba = gather_padded(x_b, a2a.pad_src)  # (N, K, C): source atom features of each a2a edge
        x = rad @ x_ba  # (N, emb_rbf, C)
        x = self.bilinear(x.reshape(n, x.shape[1] * x.shape[2]))
        x = self.scale_rbf_sum(x, ref=lambda: x_b[a2a.index[0]])
        return self.up_projection(x)


class InteractionBlock(nn.Module):
    """One GemNet-OC block: all interactions, then residual updates of edge (m) and atom (h) embeddings."""

    def __init__(self, cfg):
        super().__init__()
        A, Ed, act, dp = cfg.emb_size_atom, cfg.emb_size_edge, cfg.activation, cfg.dropout
        trip = dict(emb_trip_in=cfg.emb_size_trip_in, emb_trip_out=cfg.emb_size_trip_out,
                    emb_rbf=cfg.emb_size_rbf, emb_cbf=cfg.emb_size_cbf, act=act, dropout=dp)
        self.dense_ca = Dense(Ed, Ed, act=act, dropout=dp)
        self.trip_interaction = TripletInteraction(Ed, Ed, symmetric=True, swap_output=True, **trip)
        self.quad_interaction = QuadrupletInteraction(Ed, cfg.emb_size_quad_in, cfg.emb_size_quad_out,
                                                      cfg.emb_size_rbf, cfg.emb_size_cbf, cfg.emb_size_sbf,
                                                      act=act, dropout=dp)
        self.atom_edge_interaction = TripletInteraction(A, Ed, symmetric=True, swap_output=True, **trip)
        self.edge_atom_interaction = TripletInteraction(Ed, A, symmetric=False, swap_output=False, **trip)
        self.atom_interaction = PairInteraction(A, cfg.emb_size_aint_in, cfg.emb_size_aint_out, cfg.emb_size_rbf,
                                                act=act, dropout=dp)
        self.layers_before_skip = nn.ModuleList(
            [ResidualLayer(Ed, act=act, dropout=dp) for _ in range(cfg.num_before_skip)])
        self.layers_after_skip = nn.ModuleList(
            [ResidualLayer(Ed, act=act, dropout=dp) for _ in range(cfg.num_after_skip)])
        self.atom_emb_layers = nn.ModuleList(
            [ResidualLayer(A, act=act, dropout=dp) for _ in range(cfg.num_atom_emb_layers)])
        self.atom_update = AtomUpdateBlock(A, Ed, cfg.emb_size_rbf, cfg.num_atom, act=act, dropout=dp)
        self.concat_layer = EdgeEmbedding(A, Ed, Ed, act=act, dropout=dp)
        self.residual_m = nn.ModuleList([ResidualLayer(Ed, act=act, dropout=dp) for _ in range(cfg.num_concat)])

    def forward(self, h: torch.Tensor, m: torch.Tensor, bases: dict, g) -> tuple[torch.Tensor, torch.Tensor]:
        """New (h, m). In a large call of at least :data:`~jmp_calc.model.layers.BLOCK_RECOMPUTE_MIN_SLOTS`
        padded slots the whole block is recomputed in backward (it keeps only h, m and the bases from forward to
        backward, one block's activations exist at a time; the aggregations inside are checkpointed again,
        nested)."""
        if isinstance(bases["qint"]["sph"], QuadBasis) and layers.block_recompute_wanted(m, slots=g.padded_slots):
            return recomputed(self._forward, h, m, bases, g, force=True)
        return self._forward(h, m, bases, g)

    def _forward(self, h: torch.Tensor, m: torch.Tensor, bases: dict, g) -> tuple[torch.Tensor, torch.Tensor]:
        id_swap = g.id_swap
        a2e = g.a2ee2a
        x = self.dense_ca(m)
        slots = g.padded_slots
        x = x + self.trip_interaction(m, bases["e2e"], g.trip_e2e, id_swap, slots=slots)
        x = x + self.quad_interaction(m, bases["qint"], g.quad, id_swap, slots=slots)
        x = x + self.atom_edge_interaction(h, bases["a2e"], g.trip_a2e, id_swap, expand_idx=a2e.index[0],
                                           slots=slots)
        x = x * const(1.0 / 2.0, x)  # 1/sqrt(number of edge interactions = 4)
        h_e2a = self.edge_atom_interaction(m, bases["e2a"], g.trip_e2a, id_swap, agg2=a2e.pad, slots=slots)
        h_a2a = self.atom_interaction(h, bases["a2a"], g.a2a)
        h = (h + h_e2a + h_a2a) * const(1.0 / math.sqrt(3.0), h)

        for layer in self.layers_before_skip:
            x = layer(x)
        m = (m + x) * const(_INV_SQRT2, m)
        for layer in self.layers_after_skip:
            m = layer(m)

        for layer in self.atom_emb_layers:
            h = layer(h)
        h = (h + self.atom_update(h, m, bases["atom_update"], g.main.index[1])) * const(_INV_SQRT2, h)

        m2 = self.concat_layer(h, m, g.main.index)
        for layer in self.residual_m:
            m2 = layer(m2)
        return h, (m + m2) * const(_INV_SQRT2, m)
