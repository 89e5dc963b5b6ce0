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
           "quadruplets", "reverse_edges", "tile_rows"]


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
    """Quadruplets d->b->a<-c, laid out per qint edge b->a for the aggregation (see QuadrupletInteraction).

    Every output triplet c->a<-b of a qint edge b->a meets the same input triplets d->b->a (those of b->a), minus
    the one with d == c: so the aggregation is one (M * ns, K) x (K, C) product per grid row, over a dense
    (R, M, K) grid of output slots and input slots. A row holds up to M output triplets of one qint edge (a tile:
    all of them where degrees are even, see :func:`tile_rows`) and its K input triplets (padded); the ``keep``
    mask drops the d == c pairs and the padding. Rows are ordered by qint edge, so by target atom.
    """

    tin_in: np.ndarray  #: main edge d->b of each input triplet
    tin_out: np.ndarray  #: qint edge b->a of each input triplet (sorted)
    tout_in: np.ndarray  #: qint edge b->a of each output triplet
    tout_out: np.ndarray  #: main edge c->a of each output triplet (sorted)
    row_qint: np.ndarray  #: (R,) qint edge b->a of each grid row
    pad_in: np.ndarray  #: (R, K) input triplets of each row's qint edge (sentinel T_in)
    slot_main: np.ndarray  #: (R * M,) main edge c->a of each output slot (0 in padding slots: masked)
    keep: np.ndarray  #: (R, M, K) bool: output slot m and input slot k of row r form a quadruplet
    pad_e: np.ndarray  #: (E, K_e) output slots (r * M + m) of each main edge c->a (sentinel R * M)
    atom_main: np.ndarray  #: (N + 1,) main edges ending at atom a: atom_main[a] .. atom_main[a + 1] - 1
    atom_rows: np.ndarray  #: (N + 1,) the same for the grid rows (of the qint edges ending at a)

    # The quadruplets as lists (one entry each, sorted by output triplet, so by main edge c->a) are not stored: the
    # model works on the grid, and the lists, 3 x Q entries (37 M quadruplets for a 10,976-atom Cu cell), took a
    # third of the time of building the quadruplets. Derived on demand, from numpy arrays or torch tensors.

    @property
    def num_quadruplets(self) -> int:
        return int(self.keep.sum())

    @property
    def out(self):
        """Main edge c->a of each quadruplet (sorted)."""
        _, keep_t = self._triplet_rows()
        return _repeat(self.tout_out, keep_t.sum(1))

    @property
    def trip_in_to_quad(self):
        """Input triplet of each quadruplet."""
        rows, keep_t = self._triplet_rows()
        m = max(int(self.keep.shape[1]), 1)
        return self.pad_in[rows // m][keep_t]

    @property
    def trip_out_to_quad(self):
        """Output triplet of each quadruplet."""
        _, keep_t = self._triplet_rows()
        return _repeat(None, keep_t.sum(1))

    def _triplet_rows(self):
        """Grid slot r * M + m of every output triplet, in output-triplet order (``pad_e`` row by row: main
        edges are sorted, and so are their output triplets), and the (T_out, K) rows of ``keep`` at them."""
        r, m, k = self.keep.shape
        slots = self.pad_e.reshape(-1)
        rows = slots[slots < r * m]
        return rows, self.keep.reshape(r * m, k)[rows]


def _repeat(values, counts):
    """``values[i]`` repeated ``counts[i]`` times (``values`` None: ``i`` itself, :func:`_rows`), for numpy arrays
    or torch tensors."""
    if isinstance(counts, np.ndarray):
        return _rows(counts) if values is None else np.repeat(values, counts)
    import torch

    return torch.repeat_interleave(counts) if values is None else values.repeat_interleave(counts)


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
    # lay the output triplets out per qint edge, in tiles of up to `mt` of them: grid row r = one tile of qint
    # edge row_qint[r], slot (r, m) = its m-th output triplet (one tile per qint edge where degrees are even)
    n_q = len(q_src)
    tin_counts_q = np.bincount(tin_out, minlength=n_q)
    tout_counts_q = np.bincount(tout_in, minlength=n_q)
    mt = tile_rows(tout_counts_q, int(tin_counts_q.max()) if n_q else 0)
    tiles_q = -(-tout_counts_q // mt)
    row_qint = np.repeat(np.arange(n_q, dtype=np.int64), tiles_q)  # (R,)
    tile_counts = np.minimum(mt, tout_counts_q[row_qint] - ragged_arange(tiles_q) * mt)
    order = np.argsort(tout_in, kind="stable")  # output triplets grouped by qint edge (so by tile), main-edge order
    slot_t = np.append(order, len(tout_in))[group_table(tile_counts, len(tout_in))]  # (R, M), sentinel T_out
    m_max = slot_t.shape[1]
    # (R, K): the input triplets of each row's qint edge (tin_out is sorted: consecutive ranges)
    pad_in = group_table(tin_counts_q, len(tin_in))[row_qint]
    used_out = slot_t < len(tout_in)
    slot_main = np.where(used_out, np.append(tout_out, 0)[slot_t], 0)
    # keep (r, m, k) unless padding or c == d (same atom; same image: the image of d seen from a is
    # offset(d->b) + offset(b->a), that of c is offset(c->a))
    used_in = pad_in < len(tin_in)
    d_atom = np.append(main_src[tin_in], -1)[pad_in]  # (R, K)
    keep = used_out[:, :, None] & used_in[:, None, :]
    same = d_atom[:, None, :] == main_src[slot_main][:, :, None]
    if periodic:
        d_key = np.append(mk[tin_in] + qk[tin_out], 0)[pad_in]
        same &= d_key[:, None, :] == mk[slot_main][:, :, None]
    keep &= ~same
    # the grid slot of each output triplet
    rows = np.empty(len(tout_in), dtype=np.int64)
    rows[slot_t[used_out]] = np.flatnonzero(used_out)
    # output slots of each main edge c->a (tout_out is sorted: its output triplets are consecutive)
    n_slots = len(row_qint) * m_max
    pad_e = np.append(rows, n_slots)[group_table(np.bincount(tout_out, minlength=len(main_src)), len(tout_out))]
    atom_main = np.append(0, np.cumsum(np.bincount(main_dst, minlength=n_atoms)))
    atom_rows = np.append(0, np.cumsum(np.bincount(q_dst, weights=tiles_q, minlength=n_atoms))).astype(np.int64)
    return Quadruplets(tin_in, tin_out, tout_in, tout_out, row_qint, pad_in, slot_main.reshape(-1), keep, pad_e,
                       atom_main, atom_rows)


#: the cost of one more (M ns, K) x (K, C) product of the quadruplet aggregation (per-matrix overhead of the
#: batched matmuls, forward and backward), in padded (m, k) grid elements (each ~ns * 10 flops of dihedral basis)
TILE_OVERHEAD = 48


def tile_rows(counts: np.ndarray, k: int) -> int:
    """Output triplets per grid row: the tile size t minimising sum_j ceil(M_j / t) (t k + TILE_OVERHEAD) over the
    qint edges' output counts M_j (ties: the larger t). Even degrees (bulk) give t = max M_j, one row per qint
    edge; a batch of molecules with uneven degrees gets smaller tiles instead of rows padded to the largest."""
    freq = np.bincount(counts)
    values = np.flatnonzero(freq)
    values = values[values > 0]
    if not len(values):
        return 1
    t = np.arange(1, int(values.max()) + 1)
    cost = (freq[values, None] * -(-values[:, None] // t) * (t * k + TILE_OVERHEAD)).sum(0)
    return int(t[len(t) - 1 - np.argmin(cost[::-1])])


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
