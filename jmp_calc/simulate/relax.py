"""Many ASE optimizers in lock-step, with one batched model call per step."""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

__all__ = ["relax_many"]


class _Cached(Calculator):
    """Serves results computed in a batch; recomputes alone (correct, slower) if asked about another state."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, potential, properties):
        super().__init__()
        self.potential = potential
        self.props = properties

    def store(self, atoms, result):
        self.atoms = atoms.copy()
        self.results = dict(result)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        (self.results,) = self.potential.predict([self.atoms], properties=self.props)


def _as_atoms(obj):
    if hasattr(obj, "get_positions"):
        return obj
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_atoms(obj)


def _write_back(obj, atoms) -> None:
    """Relaxed positions (and cell) into the pymatgen Structure/Molecule that was passed in."""
    if hasattr(obj, "lattice"):
        from pymatgen.core import Lattice

        obj.lattice = Lattice(atoms.cell.array)
        for i, site in enumerate(obj):
            obj.replace(i, site.species, coords=atoms.positions[i], coords_are_cartesian=True)
    else:
        for i, site in enumerate(obj):
            obj.replace(i, site.species, coords=atoms.positions[i])


def relax_many(atoms_list, calc, fmax: float = 0.05, optimizer: str = "FIRE", cell: bool = False,
               steps: int = 500, optimizer_kwargs: dict | None = None, progress: bool | None = None):
    """Relax every structure of ``atoms_list`` (ASE Atoms, pymatgen Structure or Molecule) in place; returns a
    list of dicts (converged, steps, energy).

    All active structures are evaluated together in one model call per step; converged ones drop out.
    ``cell=True`` relaxes the cell too, through ``FrechetCellFilter`` (needs a conservative model for stress).
    ``calc``: a :class:`~jmp_calc.JMPCalculator`. Each structure's trajectory is the one a plain ASE relaxation with
    the same optimizer would follow.
    """
    import ase.optimize
    from ase.filters import FrechetCellFilter
    from tqdm import tqdm

    originals = list(atoms_list)
    atoms_list = [_as_atoms(a) for a in originals]  # pymatgen Structure/Molecule: relaxed copy, written back
    potential = calc.potential
    if cell and "stress" not in potential.implemented_properties:
        raise ValueError("cell relaxation needs stress: use a conservative model (forces='conservative')")
    opt_cls = getattr(ase.optimize, optimizer, None)
    if opt_cls is None:
        raise ValueError(f"unknown ASE optimizer {optimizer!r}")
    props = ("energy", "forces", "stress") if cell else ("energy", "forces")
    caches, opts, targets = [], [], []
    for atoms in atoms_list:
        c = _Cached(potential, props)
        atoms.calc = c
        target = FrechetCellFilter(atoms) if cell else atoms
        caches.append(c)
        targets.append(target)
        opts.append(opt_cls(target, logfile=None, **(optimizer_kwargs or {})))
    active = list(range(len(atoms_list)))
    n_steps = [0] * len(atoms_list)
    converged = [False] * len(atoms_list)
    show = progress if progress is not None else len(atoms_list) > 20
    bar = tqdm(total=len(atoms_list), desc="relax_many", unit="struct", disable=not show)
    while active:
        preds = potential.predict([atoms_list[i] for i in active], properties=props)
        still = []
        for i, pred in zip(active, preds):
            caches[i].store(atoms_list[i], pred)
            f = targets[i].get_forces()
            if np.sqrt((f**2).sum(axis=1).max()) < fmax:
                converged[i] = True
            elif n_steps[i] >= steps:
                pass
            else:
                opts[i].step()
                n_steps[i] += 1
                still.append(i)
                continue
            bar.update(1)
        active = still
    bar.close()
    for orig, atoms in zip(originals, atoms_list):
        if orig is not atoms:
            _write_back(orig, atoms)
    return [{"converged": converged[i], "steps": n_steps[i], "energy": atoms_list[i].get_potential_energy()}
            for i in range(len(atoms_list))]
