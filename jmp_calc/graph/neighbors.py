"""The one neighbour-list function of the package (vesin: O(N) cell lists, any cell shape, mixed periodicity).

Edge convention everywhere in jmp_calc: an edge ``s -> t`` has source ``s`` and target ``t`` (the atom that
aggregates). The source image sits at ``pos[s] + offset @ cell`` with integer ``offset``; the edge vector is
``pos[t] - pos[s] - offset @ cell``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["neighbor_list", "MIN_DISTANCE"]

#: pairs closer than this (Angstrom) are dropped, as in JMP's graph code (d^2 <= 1e-4): it removes an atom's own
#: image and coincident atoms, which would otherwise give 0/0 unit vectors.
MIN_DISTANCE = 0.01


def _box(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """vesin wants a usable box only along periodic axes; molecules get a zero box."""
    if not pbc.any():
        return np.zeros((3, 3))
    return np.asarray(cell, dtype=np.float64)


def neighbor_list(positions: np.ndarray, cell: np.ndarray, pbc, cutoff: float):
    """All pairs within ``cutoff`` (Angstrom), both directions, including periodic images.

    Returns ``(src, dst, offsets, distances)``: int64 (E,), int64 (E,), int64 (E, 3), float64 (E,), with the
    convention of this module. Pairs closer than :data:`MIN_DISTANCE` are dropped.
    """
    from vesin import NeighborList

    positions = np.ascontiguousarray(positions, dtype=np.float64)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
    if len(positions) == 0:
        e = np.zeros(0, dtype=np.int64)
        return e, e.copy(), np.zeros((0, 3), dtype=np.int64), np.zeros(0)
    nl = NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, shifts, dist = nl.compute(positions, _box(cell, pbc), pbc.tolist() if pbc.any() else False,
                                    quantities="ijSd")
    # vesin: vector = x_j - x_i + S @ box  ->  target i, source j, offset S  (source image = x_j + S @ box)
    keep = dist > MIN_DISTANCE
    return (j[keep].astype(np.int64), i[keep].astype(np.int64), shifts[keep].astype(np.int64),
            dist[keep].astype(np.float64))
