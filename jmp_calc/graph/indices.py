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

__all__ = ["Triplets", "Quadruplets", "csr_starts", "ragged_arange", "inner_index", "group_table", "triplets",
           "quadruplets", "reverse_edges"]


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


def group_table(counts: np.ndarray, sentinel: int) -> np.ndarray:
    """(len(counts), max count) table whose row ``i`` holds the positions of group ``i`` of a group-sorted array
    (``start_i, start_i + 1, ...``) and ``sentinel`` in the unused slots: :func:`pad_table` of a sorted index with
    its :func:`inner_index` and ``values = arange``, built by broadcasting instead of a scatter."""
    kmax = int(counts.max()) if len(counts) else 0
    slot = np.arange(kmax, dtype=np.int64)
    table = np.add.outer(np.cumsum(counts) - counts, slot)  # (faster than np.where on the broadcast operands)
    np.putmask(table, np.less_equal.outer(counts, slot), sentinel)
    return table


def _candidates(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows with candidate ranges ``starts[i] .. starts[i] + counts[i] - 1``: the (rows, max count) table of
    candidates (unused slots hold 0, a valid index whenever any candidate exists) and its mask of used slots."""
    kmax = int(counts.max()) if len(counts) else 0
    slot = np.arange(kmax, dtype=np.int64)
    used = np.greater.outer(counts, slot)
    cand = np.add.outer(starts, slot)
    np.putmask(cand, ~used, 0)
    return cand, used


def _compact(cand: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The kept candidates in row-major order (rows stay sorted) and the number kept per row."""
    return cand[keep], np.count_nonzero(keep, axis=1)


def _rows(counts: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(counts), dtype=np.int64), counts)


def _pairs(rows_atom: np.ndarray, in_dst: np.ndarray, n_atoms: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate table of every input edge ending at the atom of each row (``rows_atom``); see _candidates."""
    starts, counts = csr_starts(in_dst, n_atoms)
    return _candidates(starts[rows_atom], counts[rows_atom])


def triplets(in_src, in_dst, in_off, out_src, out_dst, out_off, n_atoms: int) -> Triplets:
    """Input edges b->a (``in_*``, sorted by target) for each output edge c->a; drops b->a == c->a."""
    cand, keep = _pairs(out_dst, in_dst, n_atoms)
    same = in_src[cand] == out_src[:, None]
    if in_off.any() or out_off.any():
        same &= offset_keys(in_off)[cand] == offset_keys(out_off)[:, None]
    inp, per_out = _compact(cand, keep & ~same)
    out = _rows(per_out)
    pad = group_table(per_out, len(inp))
    pad_in = np.append(inp, len(in_src))[pad]
    return Triplets(inp, out, ragged_arange(per_out), pad.shape[1], pad, pad_in)


def quadruplets(main_src, main_dst, main_off, q_src, q_dst, q_off, n_atoms: int) -> Quadruplets:
    periodic = bool(main_off.any() or q_off.any())
    mk, qk = (offset_keys(main_off), offset_keys(q_off)) if periodic else (None, None)
    # input triplets d->b->a: for every qint edge b->a, the main edges d->b (excluding d->b == reverse of b->a)
    cand, keep = _pairs(q_src, main_dst, n_atoms)
    same = main_src[cand] == q_dst[:, None]
    if periodic:
        same &= (mk[cand] + qk[:, None]) == 0
    tin_in, tin_counts = _compact(cand, keep & ~same)
    tin_out = _rows(tin_counts)
    # output triplets c->a<-b: for every main edge c->a, the qint edges b->a (excluding b->a == c->a)
    cand, keep = _pairs(main_dst, q_dst, n_atoms)
    same = q_src[cand] == main_src[:, None]
    if periodic:
        same &= qk[cand] == mk[:, None]
    tout_in, tout_counts = _compact(cand, keep & ~same)
    tout_out = _rows(tout_counts)
    # join through the shared qint edge b->a: every input triplet of qint edge tout_in[j] (they are consecutive:
    # tin_out is sorted), minus those with c == d (same atom; same image: the image of d seen from a is
    # offset(d->b) + offset(b->a), that of c is offset(c->a))
    tin_starts = np.cumsum(tin_counts) - tin_counts
    cand, keep = _candidates(tin_starts[tout_in], tin_counts[tout_in])
    c_src = main_src[tout_out]
    same = main_src[tin_in][cand] == c_src[:, None]
    if periodic:
        same &= (mk[tin_in] + qk[tin_out])[cand] == mk[tout_out][:, None]
    trip_in_to_quad, per_tout = _compact(cand, keep & ~same)
    trip_out_to_quad = _rows(per_tout)
    c_edge = np.repeat(tout_out, per_tout)
    pad_j = group_table(per_tout, len(trip_in_to_quad))
    pad_j_in = np.append(trip_in_to_quad, len(tin_in))[pad_j]
    pad_e = group_table(np.bincount(tout_out, minlength=len(main_src)), len(tout_out))
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
