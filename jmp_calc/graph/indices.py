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
    """``inp``: input edge of each triplet, ``out``: output edge (sorted), ``out_agg``: rank within ``out``.

    ``pad`` (E_out, kmax): triplet at each slot of an output edge's zero-padded neighbour list (sentinel = number
    of triplets); ``pad_in``: the same slots as input-edge indices (sentinel = number of input edges). The model
    fills padded tensors with one gather from a table with an appended zero row.
    """

    inp: np.ndarray
    out: np.ndarray
    out_agg: np.ndarray
    kmax: int
    pad: np.ndarray
    pad_in: np.ndarray


@dataclass
class Quadruplets:
    tin_in: np.ndarray  #: main edge d->b of each input triplet
    tin_out: np.ndarray  #: qint edge b->a of each input triplet
    tout_in: np.ndarray  #: qint edge b->a of each output triplet
    tout_out: np.ndarray  #: main edge c->a of each output triplet
    out: np.ndarray  #: main edge c->a of each quadruplet (sorted)
    trip_in_to_quad: np.ndarray
    trip_out_to_quad: np.ndarray
    #: slot tables for the factorised aggregation (see QuadrupletInteraction): quadruplets of each output
    #: triplet (sentinel Q), the same slots as input triplets (sentinel T_in), output triplets of each main edge
    #: (sentinel T_out)
    pad_j: np.ndarray
    pad_j_in: np.ndarray
    pad_e: np.ndarray


def offset_keys(off: np.ndarray) -> np.ndarray:
    """Additive int64 key of integer image offsets: key(a + b - c) = key(a) + key(b) - key(c), 0 iff zero offset
    (valid for components below 2**15 in magnitude, far beyond any cutoff/cell ratio)."""
    off = off.astype(np.int64)
    return (off[:, 0] << 32) + (off[:, 1] << 16) + off[:, 2]


def pad_table(out: np.ndarray, out_agg: np.ndarray, n_out: int, kmax: int, values: np.ndarray,
              sentinel: int) -> np.ndarray:
    """(n_out, kmax) table with ``values[i]`` at ``[out[i], out_agg[i]]`` and ``sentinel`` elsewhere."""
    table = np.full((n_out, kmax), sentinel, dtype=np.int64)
    table[out, out_agg] = values
    return table


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
    keep = in_src[inp] != out_src[out]
    if in_off.any() or out_off.any():
        keep |= offset_keys(in_off)[inp] != offset_keys(out_off)[out]
    inp, out = inp[keep], out[keep]
    out_agg, kmax = inner_index(out, len(out_dst))
    pad = pad_table(out, out_agg, len(out_dst), kmax, np.arange(len(out), dtype=np.int64), len(out))
    pad_in = np.append(inp, len(in_src))[pad]
    return Triplets(inp, out, out_agg, kmax, pad, pad_in)


def quadruplets(main_src, main_dst, main_off, q_src, q_dst, q_off, n_atoms: int) -> Quadruplets:
    periodic = bool(main_off.any() or q_off.any())
    mk, qk = (offset_keys(main_off), offset_keys(q_off)) if periodic else (None, None)
    # input triplets d->b->a: for every qint edge b->a, the main edges d->b (excluding d->b == reverse of b->a)
    tin_in, tin_out = _expand(q_src, main_dst, n_atoms)
    keep = main_src[tin_in] != q_dst[tin_out]
    if periodic:
        keep |= (mk[tin_in] + qk[tin_out]) != 0
    tin_in, tin_out = tin_in[keep], tin_out[keep]
    # output triplets c->a<-b: for every main edge c->a, the qint edges b->a (excluding b->a == c->a)
    tout_in, tout_out = _expand(main_dst, q_dst, n_atoms)
    keep = q_src[tout_in] != main_src[tout_out]
    if periodic:
        keep |= qk[tout_in] != mk[tout_out]
    tout_in, tout_out = tout_in[keep], tout_out[keep]
    # join through the shared qint edge b->a (tin_out is sorted by qint edge)
    tin_starts, tin_counts = csr_starts(tin_out, len(q_src))
    reps = tin_counts[tout_in]
    trip_out_to_quad = np.repeat(np.arange(len(tout_out), dtype=np.int64), reps)
    trip_in_to_quad = np.repeat(tin_starts[tout_in], reps) + ragged_arange(reps)
    # drop c == d (same atom and same image)
    d_edge = tin_in[trip_in_to_quad]
    c_edge = tout_out[trip_out_to_quad]
    keep = main_src[c_edge] != main_src[d_edge]
    if periodic:
        keep |= (mk[d_edge] + qk[tout_in[trip_out_to_quad]] - mk[c_edge]) != 0
    trip_in_to_quad, trip_out_to_quad, c_edge = trip_in_to_quad[keep], trip_out_to_quad[keep], c_edge[keep]
    n_q, n_tout = len(trip_in_to_quad), len(tout_out)
    inner_j, k_j = inner_index(trip_out_to_quad, n_tout)
    pad_j = pad_table(trip_out_to_quad, inner_j, n_tout, k_j, np.arange(n_q, dtype=np.int64), n_q)
    pad_j_in = np.append(trip_in_to_quad, len(tin_in))[pad_j]
    inner_e, k_e = inner_index(tout_out, len(main_src))
    pad_e = pad_table(tout_out, inner_e, len(main_src), k_e, np.arange(n_tout, dtype=np.int64), n_tout)
    return Quadruplets(tin_in, tin_out, tout_in, tout_out, c_edge, trip_in_to_quad, trip_out_to_quad,
                       pad_j, pad_j_in, pad_e)


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
