"""Harmonic phonons with phonopy, every displaced supercell evaluated in one batched model call."""

from __future__ import annotations

import numpy as np

__all__ = ["phonons"]


def phonons(atoms, calc, supercell=(2, 2, 2), *, distance: float = 0.01, batch_size: int = 16,
            on_error: str = "raise"):
    """Finite-displacement force constants of ``atoms`` (a primitive or conventional cell) with ``calc``.

    ``calc``: a :class:`~jmp_calc.JMPCalculator` (its potential is called in batches of ``batch_size``
    supercells) or any ASE calculator (called one supercell at a time). Returns the ``phonopy.Phonopy`` object
    with force constants produced; use its ``run_band_structure`` / ``run_mesh`` / ``plot_*`` methods.

    ``atoms`` may also be a list of structures: then a list, one ``Phonopy`` per structure (each computed alone).
    ``on_error="skip"``: a structure that cannot be evaluated (not periodic, fails the input checks, NaN/inf
    forces in a displaced supercell) gives ``{"error": reason, "index": i}`` in its place; ``"raise"`` (default)
    raises.
    """
    from ..potential import STRUCTURE_ERRORS, InputError
    from .relax import _check_mode

    skip = _check_mode(on_error)
    many = isinstance(atoms, (list, tuple))
    out = []
    for i, a in enumerate(atoms if many else [atoms]):
        try:
            out.append(_phonons_one(a, calc, supercell, distance=distance, batch_size=batch_size))
        except STRUCTURE_ERRORS as exc:
            if not skip:
                raise
            out.append({"error": str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}",
                        "index": i})
    return out if many else out[0]


def _phonons_one(atoms, calc, supercell, *, distance: float, batch_size: int):
    try:
        from phonopy import Phonopy
        from phonopy.structure.atoms import PhonopyAtoms
    except ImportError:  # pragma: no cover
        raise ImportError("phonons need phonopy: pip install 'jmp-calc[phonons]'") from None
    from ase import Atoms

    from ..potential import InputError

    if not np.all(atoms.pbc):
        raise InputError("phonons need a structure periodic in all three directions")
    unit = PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=atoms.cell.array,
                        scaled_positions=atoms.get_scaled_positions())
    smat = np.diag(supercell) if np.ndim(supercell) == 1 else np.asarray(supercell)
    ph = Phonopy(unit, supercell_matrix=smat, primitive_matrix="auto")
    ph.generate_displacements(distance=distance)
    cells = [Atoms(symbols=sc.symbols, cell=sc.cell, scaled_positions=sc.scaled_positions, pbc=True)
             for sc in ph.supercells_with_displacements]
    from ..calculator import JMPCalculator

    if isinstance(calc, JMPCalculator):
        potential = calc.potential
        forces = []
        for k in range(0, len(cells), batch_size):
            forces += [r["forces"] for r in potential.predict(cells[k:k + batch_size], properties=("forces",))]
    else:
        forces = []
        for c in cells:
            c.calc = calc
            forces.append(c.get_forces())
    forces = np.asarray(forces)
    if not np.all(np.isfinite(forces)):
        raise InputError("the model gave non-finite forces for a displaced supercell")
    ph.forces = forces
    ph.produce_force_constants()
    return ph
