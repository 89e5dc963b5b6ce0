"""The one neighbour-list function of the package (vesin: O(N) cell lists, any cell shape, mixed periodicity).

Edge convention everywhere in jmp_calc: an edge ``s -> t`` has source ``s`` and target ``t`` (the atom that
aggregates). The source image sits at ``pos[s] + offset @ cell`` with integer ``offset``; the edge vector is
``pos[t] - pos[s] - offset @ cell``.
"""

from __future__ import annotations

import itertools

import numpy as np

from .geometry import cell_heights, open_axes

__all__ = ["neighbor_list", "vesin_pairs", "open_groups", "MIN_DISTANCE"]

#: pairs closer than this (Angstrom) are dropped, as in JMP's graph code (d^2 <= 1e-4): it removes an atom's own
#: image and coincident atoms, which would otherwise give 0/0 unit vectors.
MIN_DISTANCE = 0.01

#: vesin (0.6, cpu_cell_list.cpp) caps its cell list at 1e5 cells by rescaling the grid; when the grid is very
#: uneven (a flat structure some 300 A across next to a cutoff of 0.5 A, an atom 1e5 A away along a line, a
#: periodic cell 0.3 A thin) one direction is rescaled to 0 cells and the whole process dies of SIGFPE.
_VESIN_MAX_CELLS = 1e5


def _grid_collapses(heights: np.ndarray, radius: float) -> bool:
    """Whether vesin's cell grid for box ``heights`` (A) could lose a direction; checked for heights 5 % off
    either way, since which direction is on the unsafe side depends on the shape, and with 5 % to spare on the
    rescaled counts before they are truncated: vesin's own face distances differ from ``heights`` in the last bits,
    so its count can be one less (a 1e5 A periodic height gave 199,999 cells of 0.5 A, not 200,000, and with two
    5-cell open directions the rescaled first count 0.999995, truncated to 0: SIGFPE)."""
    if np.prod(np.maximum(np.trunc(heights * 1.05 / radius), 1.0)) <= _VESIN_MAX_CELLS:
        return False  # no scaling reaches the cap (the common case): nothing is rescaled
    for scale in itertools.product((0.95, 1.05), repeat=3):
        n = np.maximum(np.trunc(heights * np.array(scale) / radius), 1.0)
        if np.prod(n) > _VESIN_MAX_CELLS:
            r_xy, r_yz = n[0] / n[1], n[1] / n[2]
            n2 = np.cbrt(_VESIN_MAX_CELLS / (r_xy * r_yz * r_yz))
            n1 = r_yz * np.trunc(n2)
            if min(n2, n1, r_xy * np.trunc(n1)) < 1.05:
                return True
    return False


def open_groups(projections: np.ndarray, cutoff: float) -> np.ndarray:
    """Group labels (0..G-1, int64) of atoms such that no two atoms of different groups are within ``cutoff``.

    ``projections`` (n, k): the atoms' coordinates along the k open directions (orthogonal to the periodic cell
    vectors, so no periodic image changes them). Wherever the sorted coordinates along one open direction leave a
    gap wider than ``cutoff``, every pair across the gap is farther apart than that, images included; groups are
    split at such gaps along each direction in turn until none splits further.
    """
    n = len(projections)
    labels = np.zeros(n, dtype=np.int64)
    n_groups = 1 if n else 0
    while n > 1:
        for a in range(projections.shape[1]):
            order = np.lexsort((projections[:, a], labels))
            x, group = projections[order, a], labels[order]
            starts = np.ones(n, dtype=bool)
            starts[1:] = (group[1:] != group[:-1]) | (np.diff(x) > cutoff)
            labels = np.empty(n, dtype=np.int64)
            labels[order] = np.cumsum(starts) - 1
        if int(labels.max()) + 1 == n_groups:
            break
        n_groups = int(labels.max()) + 1
    return labels


def vesin_pairs(positions: np.ndarray, cell: np.ndarray, pbc, cutoff: float, *, full_list: bool,
                quantities: str) -> tuple:
    """``vesin.NeighborList(cutoff, full_list).compute(...)``, always with all three directions periodic.

    An open direction becomes a periodic one whose cell vector (orthogonal to the periodic ones) is longer than
    the structure's extent along it plus two cutoffs, so no image is in range and every pair keeps a zero shift
    there: the same pairs and distances as an open direction. This avoids vesin's mixed-periodicity search, whose
    cost grows with the square of the open extent (0.5 A pairs of a slab with an atom 1000 A above: 35 s), and
    its collapsed cell grid (SIGFPE, see :data:`_VESIN_MAX_CELLS`): the open vectors are lengthened, or else the
    search radius is grown and pairs beyond ``cutoff`` dropped.

    Atoms separated along an open direction by a gap wider than ``cutoff`` (:func:`open_groups`) are searched
    group by group: the groups are far apart, so no pair crosses them, and each group's box spans only its own
    extent. Without this, two atoms 1e5 A apart in a wire with a 0.3 A period needed a ~600 A search radius (to
    keep vesin's grid under its cap), i.e. thousands of images of the thin period: 10 CPU s per search.
    ``quantities`` must contain ``d``; ``i`` and ``j`` are indices into ``positions``.
    """
    pos = np.ascontiguousarray(positions, dtype=np.float64)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
    cell = np.asarray(cell, dtype=np.float64)
    if pbc.all() or len(pos) < 2:
        return _vesin_search(pos, cell, pbc, float(cutoff), full_list, quantities)
    axes = open_axes(cell, pbc)
    proj = pos @ axes.T
    labels = open_groups(proj, float(cutoff))
    if labels.max() == 0:
        return _vesin_search(pos, cell, pbc, float(cutoff), full_list, quantities)
    parts = []
    for members in np.split(np.argsort(labels, kind="stable"), np.cumsum(np.bincount(labels))[:-1]):
        if len(members) == 1 and not pbc.any():
            continue  # an isolated atom of an open structure has no pair
        # moved along the open directions next to the origin (no image shift changes): a small box for vesin
        moved = pos[members] - proj[members].min(axis=0) @ axes
        out = _vesin_search(moved, cell, pbc, float(cutoff), full_list, quantities)
        parts.append([members[x] if q in "ij" else x for q, x in zip(quantities, out)])
    if not parts:  # isolated atoms only: vesin's empty arrays, with its dtypes and shapes
        return _vesin_search(pos[:1], cell, pbc, float(cutoff), full_list, quantities)
    return tuple(np.concatenate(arrays) for arrays in zip(*parts))


def _vesin_search(pos: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float, full_list: bool,
                  quantities: str) -> tuple:
    """One vesin search with the open directions made periodic (see :func:`vesin_pairs`)."""
    from vesin import NeighborList

    radius = cutoff
    box = cell.copy()
    heights = cell_heights(cell, pbc)
    if not pbc.all():
        axes = open_axes(cell, pbc)
        proj = pos @ axes.T
        # longer than the extent plus two cutoffs (no image in range); and >= 1e-3 of the farthest coordinate, so
        # that vesin's int32 cell indices of far-away atoms (wrapped into this box) stay small
        lengths = np.maximum(np.ptp(proj, axis=0) + 2 * radius + 1.0, 1e-3 * np.abs(proj).max(axis=0))
        heights[~pbc] = lengths
        if _grid_collapses(heights, radius):  # a long thin shape: make the open directions as long as the longest
            lengths = np.full(len(lengths), heights.max())
            heights[~pbc] = lengths
        box[~pbc] = axes * lengths[:, None]
    for _ in range(200):
        if not _grid_collapses(heights, radius):
            break
        radius *= 1.25
    out = dict(zip(quantities, NeighborList(cutoff=radius, full_list=full_list).compute(
        pos, box, True, quantities=quantities)))
    if radius > cutoff:
        keep = out["d"] < cutoff
        return tuple(out[q][keep] for q in quantities)
    return tuple(out[q] for q in quantities)


def neighbor_list(positions: np.ndarray, cell: np.ndarray, pbc, cutoff: float):
    """All pairs within ``cutoff`` (Angstrom), both directions, including periodic images.

    Returns ``(src, dst, offsets, distances)``: int64 (E,), int64 (E,), int64 (E, 3), float64 (E,), with the
    convention of this module. Pairs closer than :data:`MIN_DISTANCE` are dropped.
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
    if len(positions) == 0:
        e = np.zeros(0, dtype=np.int64)
        return e, e.copy(), np.zeros((0, 3), dtype=np.int64), np.zeros(0)
    i, j, shifts, dist = vesin_pairs(positions, cell, pbc, cutoff, full_list=True, quantities="ijSd")
    # vesin: vector = x_j - x_i + S @ box  ->  target i, source j, offset S  (source image = x_j + S @ box)
    keep = dist > MIN_DISTANCE
    return (j[keep].astype(np.int64), i[keep].astype(np.int64), shifts[keep].astype(np.int64),
            dist[keep].astype(np.float64))
