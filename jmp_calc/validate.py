"""Checks of a structure before graphs are built: one clear :class:`~jmp_calc.errors.InputError` (a
``ValueError``) per problem instead of a NaN, a silently wrong number or a crash deep in torch or vesin.

Called from :meth:`jmp_calc.potential.Potential.check`; ``docs/bad_inputs.md`` lists every case and its test.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np

from .errors import InputError
from .graph.geometry import cell_heights

__all__ = ["check_structure", "MIN_PAIR_DISTANCE", "MIN_CELL_HEIGHT", "cell_heights", "warn_user"]

#: two atoms (or an atom and a periodic image) closer than this (Angstrom) are an error: the graph code drops pairs
#: under 0.01 A (the two atoms then do not see each other at all) and closer than ~0.1 A no model output means
#: anything (the shortest bond, H2, is 0.74 A)
MIN_PAIR_DISTANCE = 0.1
#: a periodic cell whose distance between opposite faces (along a periodic direction) is below this (Angstrom) is
#: "nearly singular": an error, before the neighbour search (which would need ~(cutoff/height)^3 images or crash)
MIN_CELL_HEIGHT = 0.1

#: frames of these packages are not the user's (ASE calls the calculator from atoms.get_forces(), torch and
#: torch-sim call the torch-sim model, ...)
_NOT_USER = {"jmp_calc", "ase", "torch", "torch_sim", "phonopy"}


def warn_user(message: str, category=RuntimeWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside jmp_calc, ASE, torch(-sim) and phonopy: the
    user's line, not ours."""
    frame, level = sys._getframe(1), 2  # stacklevel 2: the caller of warn_user
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] in _NOT_USER:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def check_structure(s, num_elements: int, elements=()) -> None:
    """Raise :class:`InputError` for a structure no model can evaluate; warn for elements outside ``elements``.

    ``s``: a :class:`~jmp_calc.graph.structures.Structure`; ``num_elements``: the model's embedding size;
    ``elements``: atomic numbers of the model card (empty: no warning).
    """
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

            warn_user(f"elements {[chemical_symbols[z] for z in unseen]} were not in this model's training "
                      "data: its predictions for them are not meaningful", RuntimeWarning)
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
    if len(positions) < 2 and not pbc.any():
        return
    # a 0.5 A search is as fast as the main graph's; very small cutoffs make vesin's cell list slow
    i, j, d = vesin_pairs(positions, cell, pbc, 0.5, full_list=False, quantities="ijd")
    close = d < MIN_PAIR_DISTANCE
    if close.any():
        k = int(np.argmin(d))
        raise InputError(f"{int(close.sum())} pair(s) of atoms closer than {MIN_PAIR_DISTANCE} A (counting periodic "
                         f"images), e.g. atoms {int(i[k])} and {int(j[k])} at {d[k]:.3g} A: coincident atoms")
