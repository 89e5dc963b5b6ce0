"""Harmonic phonons with phonopy, every displaced supercell evaluated in one batched model call."""

from __future__ import annotations

import numpy as np

__all__ = ["phonons"]


def phonons(atoms, calc, supercell=(2, 2, 2), *, distance: float = 0.01, batch_size: int = 16):
    """Finite-displacement force constants of ``atoms`` (a primitive or conventional cell) with ``calc``.

    ``calc``: a :class:`~jmp_calc.JMPCalculator` (its potential is called in batches of ``batch_size``
    supercells) or any ASE calculator (called one supercell at a time). Returns the ``phonopy.Phonopy`` object
    with force constants produced; use its ``run_band_structure`` / ``run_mesh`` / ``plot_*`` methods.
    """
    try:
        from phonopy import Phonopy
        from phonopy.structure.atoms import PhonopyAtoms
    except ImportError:  # pragma: no cover
        raise ImportError("phonons need phonopy: pip install 'jmp-calc[phonons]'") from None
    from ase import Atoms

    if not np.all(atoms.pbc):
        raise ValueError("phonons need a structure periodic in all three directions")
    unit = PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=atoms.cell.array,
                        scaled_positions=atoms.get_scaled_positions())
    smat = np.diag(supercell) if np.ndim(supercell) == 1 else np.asarray(supercell)
    ph = Phonopy(unit, supercell_matrix=smat, primitive_matrix="auto")
    ph.generate_displacements(distance=distance)
    cells = [Atoms(symbols=sc.symbols, cell=sc.cell, scaled_positions=sc.scaled_positions, pbc=True)
             for sc in ph.supercells_with_displacements]
    potential = getattr(calc, "potential", None)
    if potential is not None:
        forces = []
        for k in range(0, len(cells), batch_size):
            forces += [r["forces"] for r in potential.predict(cells[k:k + batch_size], properties=("forces",))]
    else:
        forces = []
        for c in cells:
            c.calc = calc
            forces.append(c.get_forces())
    ph.forces = np.asarray(forces)
    ph.produce_force_constants()
    return ph
