"""Index sets for GemNet-OC message passing, built vectorised in numpy from target-sorted edge lists.

* triplets ``b -> a <- c`` (edge-edge, atom-edge, edge-atom): for every output edge, the input edges that end
  where the output edge ends, minus the output edge itself (same atoms *and* same image);
* quadruplets ``d -> b -> a <- c``: an input triplet d->b->a (main edge d->b, qint edge b->a) joined with an output
  triplet c->a<-b (main edge c->a) through the shared qint edge b->a, minus those with c == d (same image);
* ``id_swap``: for each main edge its reverse edge;
* ``inner``: the position of an element within its group, used to fill zero-padded dense tensors.

Any atom may have no neighbours: every function handles empty inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Triplets", "Quadruplets", "csr_starts", "ragged_arange", "inner_index", "triplets", "quadruplets",
           "reverse_edges"]


@dataclass
class Triplets:
    """``inp``: input edge of each triplet, ``out``: output edge (sorted), ``out_agg``: rank within ``out``."""

    inp: np.ndarray
    out: np.ndarray
    out_agg: np.ndarray
    kmax: int


@dataclass
class Quadruplets:
    tin_in: np.ndarray  #: main edge d->b of each input triplet
    tin_out: np.ndarray  #: qint edge b->a of each input triplet
    tout_in: np.ndarray  #: qint edge b->a of each output triplet
    tout_out: np.ndarray  #: main edge c->a of each output triplet
    out: np.ndarray  #: main edge c->a of each quadruplet (sorted)
    trip_in_to_quad: np.ndarray
    trip_out_to_quad: np.ndarray
    out_agg: np.ndarray
    kmax: int


def csr_starts(sorted_keys: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(sorted_keys, minlength=n)
    return np.cumsum(counts) - counts, counts


def ragged_arange(counts: np.ndarray) -> np.ndarray:
    """[0..c0-1, 0..c1-1, ...] for counts c."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(starts, counts)


def inner_index(sorted_idx: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """Rank of each element within its group of a sorted index array, and the largest group size."""
    starts, counts = csr_starts(sorted_idx, n)
    inner = np.arange(len(sorted_idx), dtype=np.int64) - starts[sorted_idx]
    return inner, int(counts.max()) if len(counts) else 0


def _expand(keys: np.ndarray, in_dst: np.ndarray, n_atoms: int):
    """For each output element with atom ``keys[i]``, every input edge ending at that atom."""
    starts, counts = csr_starts(in_dst, n_atoms)
    per_out = counts[keys]
    out = np.repeat(np.arange(len(keys), dtype=np.int64), per_out)
    inp = np.repeat(starts[keys], per_out) + ragged_arange(per_out)
    return inp, out


def triplets(in_src, in_dst, in_off, out_src, out_dst, out_off, n_atoms: int) -> Triplets:
    """Input edges b->a (``in_*``, sorted by target) for each output edge c->a; drops b->a == c->a."""
    inp, out = _expand(out_dst, in_dst, n_atoms)
    keep = (in_src[inp] != out_src[out]) | np.any(in_off[inp] != out_off[out], axis=1)
    inp, out = inp[keep], out[keep]
    out_agg, kmax = inner_index(out, len(out_dst))
    return Triplets(inp, out, out_agg, kmax)


def quadruplets(main_src, main_dst, main_off, q_src, q_dst, q_off, n_atoms: int) -> Quadruplets:
    # input triplets d->b->a: for every qint edge b->a, the main edges d->b (excluding d->b == reverse of b->a)
    tin_in, tin_out = _expand(q_src, main_dst, n_atoms)
    keep = (main_src[tin_in] != q_dst[tin_out]) | np.any(main_off[tin_in] + q_off[tin_out] != 0, axis=1)
    tin_in, tin_out = tin_in[keep], tin_out[keep]
    # output triplets c->a<-b: for every main edge c->a, the qint edges b->a (excluding b->a == c->a)
    tout_in, tout_out = _expand(main_dst, q_dst, n_atoms)
    keep = (q_src[tout_in] != main_src[tout_out]) | np.any(q_off[tout_in] != main_off[tout_out], axis=1)
    tout_in, tout_out = tout_in[keep], tout_out[keep]
    # join through the shared qint edge b->a (tin_out is sorted by qint edge)
    tin_starts, tin_counts = csr_starts(tin_out, len(q_src))
    reps = tin_counts[tout_in]
    out = np.repeat(tout_out, reps)
    trip_out_to_quad = np.repeat(np.arange(len(tout_out), dtype=np.int64), reps)
    trip_in_to_quad = np.repeat(tin_starts[tout_in], reps) + ragged_arange(reps)
    inter = np.repeat(tout_in, reps)
    d_edge = tin_in[trip_in_to_quad]
    off_cd = main_off[d_edge] + q_off[inter] - main_off[out]
    keep = (main_src[out] != main_src[d_edge]) | np.any(off_cd != 0, axis=1)
    out, trip_in_to_quad, trip_out_to_quad = out[keep], trip_in_to_quad[keep], trip_out_to_quad[keep]
    out_agg, kmax = inner_index(out, len(main_src))
    return Quadruplets(tin_in, tin_out, tout_in, tout_out, out, trip_in_to_quad, trip_out_to_quad, out_agg, kmax)


def reverse_edges(src: np.ndarray, dst: np.ndarray, off: np.ndarray, n_atoms: int) -> np.ndarray:
    """Index of the reverse (dst -> src, -offset) of every edge of a symmetric graph."""
    if len(src) == 0:
        return np.zeros(0, dtype=np.int64)
    r = int(np.abs(off).max()) if off.size else 0
    base = 2 * r + 1
    o = off + r

    def key(s, t, oo):
        return ((s * n_atoms + t) * base + oo[:, 0]) * base * base + oo[:, 1] * base + oo[:, 2]

    fwd = key(src, dst, o)
    order = np.argsort(fwd, kind="stable")
    rev = key(dst, src, 2 * r - o)
    pos = np.searchsorted(fwd[order], rev)
    pos = np.minimum(pos, len(order) - 1)
    idx = order[pos]
    if not np.array_equal(fwd[idx], rev):
        raise RuntimeError("main graph is not symmetric: some edge has no reverse")
    return idx
