"""The one neighbour-list function of the package (vesin: O(N) cell lists, any cell shape, mixed periodicity).

Edge convention everywhere in jmp_calc: an edge ``s -> t`` has source ``s`` and target ``t`` (the atom that
aggregates). The source image sits at ``pos[s] + offset @ cell`` with integer ``offset``; the edge vector is
``pos[t] - pos[s] - offset @ cell``.
"""

from __future__ import annotations

import itertools

import numpy as np

from .geometry import cell_heights, open_axes

__all__ = ["neighbor_list", "vesin_pairs", "MIN_DISTANCE"]

#: pairs closer than this (Angstrom) are dropped, as in JMP's graph code (d^2 <= 1e-4): it removes an atom's own
#: image and coincident atoms, which would otherwise give 0/0 unit vectors.
MIN_DISTANCE = 0.01

#: vesin (0.6, cpu_cell_list.cpp) caps its cell list at 1e5 cells by rescaling the grid; when the grid is very
#: uneven (a flat structure some 300 A across next to a cutoff of 0.5 A, an atom 1e5 A away along a line, a
#: periodic cell 0.3 A thin) one direction is rescaled to 0 cells and the whole process dies of SIGFPE.
_VESIN_MAX_CELLS = 1e5


def _grid_collapses(heights: np.ndarray, radius: float) -> bool:
    """Whether vesin's cell grid for box ``heights`` (A) could lose a direction; checked for heights 5 % off
    either way, since which direction is on the unsafe side depends on the shape."""
    if np.prod(np.maximum(np.trunc(heights * 1.05 / radius), 1.0)) <= _VESIN_MAX_CELLS:
        return False  # no scaling reaches the cap (the common case): nothing is rescaled
    for scale in itertools.product((0.95, 1.05), repeat=3):
        n = np.maximum(np.trunc(heights * np.array(scale) / radius), 1.0)
        if np.prod(n) > _VESIN_MAX_CELLS:
            r_xy, r_yz = n[0] / n[1], n[1] / n[2]
            n2 = np.trunc(np.cbrt(_VESIN_MAX_CELLS / (r_xy * r_yz * r_yz)))
            n1 = np.trunc(r_yz * n2)
            if min(n2, n1, np.trunc(r_xy * n1)) < 1:
                return True
    return False


def vesin_pairs(positions: np.ndarray, cell: np.ndarray, pbc, cutoff: float, *, full_list: bool,
                quantities: str) -> tuple:
    """``vesin.NeighborList(cutoff, full_list).compute(...)``, always with all three directions periodic.

    An open direction becomes a periodic one whose cell vector (orthogonal to the periodic ones) is longer than
    the structure's extent along it plus two cutoffs, so no image is in range and every pair keeps a zero shift
    there: the same pairs and distances as an open direction. This avoids vesin's mixed-periodicity search, whose
    cost grows with the square of the open extent (0.5 A pairs of a slab with an atom 1000 A above: 35 s), and
    its collapsed cell grid (SIGFPE, see :data:`_VESIN_MAX_CELLS`): the open vectors are lengthened, or else the
    search radius is grown and pairs beyond ``cutoff`` dropped. ``quantities`` must contain ``d``.
    """
    from vesin import NeighborList

    pos = np.ascontiguousarray(positions, dtype=np.float64)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
    cell = np.asarray(cell, dtype=np.float64)
    radius = float(cutoff)
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
