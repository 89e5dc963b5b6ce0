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


#: (cell bytes, pbc bytes, heights) of the last cell checked: MD and relaxations at fixed cell skip recomputing
_LAST_HEIGHTS: list = [None]


def _heights(cell, pbc) -> np.ndarray:
    """:func:`cell_heights`, reused for the same cell and periodicity as the previous call (an exact key)."""
    key = (np.asarray(cell, dtype=np.float64).tobytes(), pbc.tobytes())
    last = _LAST_HEIGHTS[0]
    if last is not None and last[0] == key:
        return last[1].copy()
    h = cell_heights(cell, pbc)
    _LAST_HEIGHTS[0] = (key, h.copy())
    return h


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
    heights = None
    if pbc.any():
        heights = _heights(s.cell, pbc)
        if heights.min() < MIN_CELL_HEIGHT:
            what = "singular (zero volume)" if heights.min() == 0 else "nearly singular"
            raise InputError(f"the cell is {what} along a periodic direction: distances between opposite faces "
                             f"{np.round(heights[pbc], 6).tolist()} A, minimum {MIN_CELL_HEIGHT} A (cell "
                             f"{np.round(s.cell, 6).tolist()}, pbc {pbc.tolist()})")
    _check_distances(s.positions, s.cell, pbc, heights)


#: structures with at most this many atoms are checked for close pairs by direct minimum-image distances (numpy,
#: O(N^2): ~50 us for 32 atoms instead of ~1.2 ms for vesin's 0.5 A cell list); larger ones use vesin
DIRECT_PAIR_CHECK_MAX_ATOMS = 200


def _check_distances(positions, cell, pbc, heights=None) -> None:
    if len(positions) < 2 and not pbc.any():
        return
    if _no_close_pair(positions, cell, pbc, heights):
        return
    _vesin_check(positions, cell, pbc)


def _no_close_pair(positions, cell, pbc, heights) -> bool:
    """True when ``positions`` certainly have no pair (counting periodic images) closer than
    :data:`MIN_PAIR_DISTANCE`, from minimum-image distances; False means "look closer" (a close pair, or a
    structure this shortcut does not cover): the vesin search then decides and writes the error.

    Exact for cells whose face distances (along periodic directions) exceed ``2 * MIN_PAIR_DISTANCE``: a pair
    closer than r has a fractional separation within r / height of an integer along each periodic direction, so
    with r / height < 1/2 its closest image is the rounded one. A lattice vector itself is at least the smallest
    face distance long, so an atom's own images are never close. Open directions are completed with unit vectors
    orthogonal to the periodic ones (the face distances are those of the periodic vectors alone)."""
    n = len(positions)
    if n > DIRECT_PAIR_CHECK_MAX_ATOMS:
        return False
    pos = np.asarray(positions, dtype=np.float64)
    if n < 2:  # one atom: only its own images, at least a face distance (>= MIN_CELL_HEIGHT) away
        return True
    iu, ju = np.triu_indices(n, 1)
    if pbc.any():
        if heights is None or heights[pbc].min() <= 2 * MIN_PAIR_DISTANCE:
            return False
        from .graph.geometry import open_axes

        full = np.array(cell, dtype=np.float64)
        if not pbc.all():
            full[~pbc] = open_axes(full, pbc)
        try:
            frac = np.linalg.solve(full.T, pos.T).T  # pos = frac @ full
        except np.linalg.LinAlgError:
            return False
        df = frac[ju] - frac[iu]
        df[:, pbc] -= np.round(df[:, pbc])
        diff = df @ full
    else:
        diff = pos[ju] - pos[iu]
    d2 = np.einsum("ij,ij->i", diff, diff)
    return bool(d2.min() >= MIN_PAIR_DISTANCE**2 * (1 + 1e-9))  # a margin for rounding: borderline -> vesin


def _vesin_check(positions, cell, pbc) -> None:
    from .graph.neighbors import vesin_pairs
    # a 0.5 A search is as fast as the main graph's; very small cutoffs make vesin's cell list slow
    i, j, d = vesin_pairs(positions, cell, pbc, 0.5, full_list=False, quantities="ijd")
    close = d < MIN_PAIR_DISTANCE
    if close.any():
        k = int(np.argmin(d))
        raise InputError(f"{int(close.sum())} pair(s) of atoms closer than {MIN_PAIR_DISTANCE} A (counting periodic "
                         f"images), e.g. atoms {int(i[k])} and {int(j[k])} at {d[k]:.3g} A: coincident atoms")
