"""Checks of a structure before graphs are built: one clear :class:`~jmp_calc.potential.InputError` (a
``ValueError``) per problem instead of a NaN, a silently wrong number or a crash deep in torch or vesin.

Called from :meth:`jmp_calc.potential.Potential.check`; ``docs/bad_inputs.md`` lists every case and its test.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["check_structure", "MIN_PAIR_DISTANCE", "MIN_CELL_HEIGHT", "cell_heights"]

#: two atoms (or an atom and a periodic image) closer than this (Angstrom) are an error: the graph code drops pairs
#: under 0.01 A (the two atoms then do not see each other at all) and closer than ~0.1 A no model output means
#: anything (the shortest bond, H2, is 0.74 A)
MIN_PAIR_DISTANCE = 0.1
#: a periodic cell whose distance between opposite faces (along a periodic direction) is below this (Angstrom) is
#: "nearly singular": an error, before the neighbour search (which would need ~(cutoff/height)^3 images or crash)
MIN_CELL_HEIGHT = 0.1


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


def check_structure(s, num_elements: int, elements=(), stacklevel: int = 5) -> None:
    """Raise :class:`InputError` for a structure no model can evaluate; warn for elements outside ``elements``.

    ``s``: a :class:`~jmp_calc.graph.structures.Structure`; ``num_elements``: the model's embedding size;
    ``elements``: atomic numbers of the model card (empty: no warning).
    """
    from .potential import InputError

    n = len(s.numbers)
    if n == 0:
        raise InputError("the structure has no atoms")
    if s.positions.shape != (n, 3):
        raise InputError(f"positions have shape {s.positions.shape}, expected ({n}, 3)")
    if not np.all(np.isfinite(s.positions)):
        raise InputError("positions contain NaN or inf")
    if not np.all(np.isfinite(s.cell)):
        raise InputError("the cell contains NaN or inf")
    bad = (s.numbers < 1) | (s.numbers > min(num_elements, 118))
    if bad.any():
        raise InputError(f"atomic numbers must be in 1..{min(num_elements, 118)}; "
                         f"got {sorted(set(s.numbers[bad].tolist()))}")
    if elements:
        unseen = sorted(set(s.numbers.tolist()) - set(elements))
        if unseen:
            from ase.data import chemical_symbols

            warnings.warn(f"elements {[chemical_symbols[z] for z in unseen]} were not in this model's training "
                          "data: its predictions for them are not meaningful", RuntimeWarning, stacklevel=stacklevel)
    pbc = np.asarray(s.pbc, dtype=bool)
    if pbc.any():
        heights = cell_heights(s.cell, pbc)
        if heights.min() < MIN_CELL_HEIGHT:
            what = "singular (zero volume)" if heights.min() == 0 else "nearly singular"
            raise InputError(f"the cell is {what} along a periodic direction: distances between opposite faces "
                             f"{np.round(heights[pbc], 6).tolist()} A, minimum {MIN_CELL_HEIGHT} A (cell "
                             f"{np.round(s.cell, 6).tolist()}, pbc {pbc.tolist()})")
    _check_distances(s.positions, s.cell, pbc)


def _check_distances(positions, cell, pbc) -> None:
    from .graph.neighbors import vesin_pairs
    from .potential import InputError

    if len(positions) < 2 and not pbc.any():
        return
    # a 0.5 A search is as fast as the main graph's; very small cutoffs make vesin's cell list slow
    i, j, d = vesin_pairs(positions, cell, pbc, 0.5, full_list=False, quantities="ijd")
    close = d < MIN_PAIR_DISTANCE
    if close.any():
        k = int(np.argmin(d))
        raise InputError(f"{int(close.sum())} pair(s) of atoms closer than {MIN_PAIR_DISTANCE} A (counting periodic "
                         f"images), e.g. atoms {int(i[k])} and {int(j[k])} at {d[k]:.3g} A: coincident atoms")
