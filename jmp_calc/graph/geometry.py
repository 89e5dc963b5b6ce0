"""Geometry of cells and open directions, shared by the neighbour search and the input checks."""

from __future__ import annotations

import numpy as np

__all__ = ["cell_heights", "open_axes"]


def cell_heights(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """Distance between opposite faces of the cell along each periodic direction (inf along open ones), computed
    from the periodic vectors only, so 1-D and 2-D cells with zero vectors along open directions work."""
    cell = np.asarray(cell, dtype=np.float64)
    idx = [i for i in range(3) if pbc[i]]
    out = np.full(3, np.inf)
    if not idx:
        return out
    vecs = cell[idx]
    vol = np.sqrt(max(np.linalg.det(vecs @ vecs.T), 0.0))  # |a|, |a x b| or |det| of the periodic vectors
    for k, i in enumerate(idx):
        rest = np.delete(vecs, k, axis=0)
        base = np.sqrt(max(np.linalg.det(rest @ rest.T), 0.0)) if len(rest) else 1.0
        out[i] = vol / base if base > 0 else 0.0
    return out


def open_axes(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """Orthonormal vectors spanning the open directions (orthogonal to the periodic cell vectors), one per open
    row of the cell."""
    periodic = cell[pbc]
    if len(periodic) == 0:
        return np.eye(3)
    if len(periodic) == 2:
        n = np.cross(periodic[0], periodic[1])
        return (n / np.linalg.norm(n))[None]
    a = periodic[0] / np.linalg.norm(periodic[0])
    b = np.eye(3)[int(np.argmin(np.abs(a)))]
    u = np.cross(a, b)
    u /= np.linalg.norm(u)
    return np.stack([u, np.cross(a, u)])
