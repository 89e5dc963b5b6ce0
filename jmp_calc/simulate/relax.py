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


def _check_mode(on_error: str) -> bool:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    return on_error == "skip"


def evaluate_isolated(potential, atoms_list, indices, props, skip: bool, errors: dict, *, volumes=None):
    """``potential.predict`` of ``atoms_list[i]`` for ``i`` in ``indices``, one structure's failure isolated.

    Each structure is checked and its graphs built alone first; one that fails (or whose cell collapsed to under a
    quarter of its volume in ``volumes``), and one the model gives NaN/inf for, is left out (its reason in
    ``errors[i]`` with ``skip``, else an :class:`InputError`), and the batch is evaluated without it, as a run
    without that structure would. Returns ``{i: result}`` of the others."""
    from ..graph.structures import as_structure
    from ..potential import STRUCTURE_ERRORS, InputError, formula, nonfinite

    def fail(i, why):
        if not skip:
            raise InputError(f"structure {i} ({formula(as_structure(atoms_list[i]))}): {why}")
        errors[i] = why

    todo, graphs = [], []
    for i in indices:
        atoms = atoms_list[i]
        if volumes is not None and volumes[i] > 0 and atoms.get_volume() < 0.25 * volumes[i]:
            fail(i, f"the cell collapsed: volume {atoms.get_volume():.4g} A^3, from {volumes[i]:.4g} A^3")
            continue
        try:
            (g,) = potential.build_graphs([atoms])
        except STRUCTURE_ERRORS as exc:
            if not skip:
                raise
            errors[i] = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
            continue
        todo.append(i)
        graphs.append(g)
    while True:
        preds = potential.predict([atoms_list[i] for i in todo], properties=props, graphs=graphs)
        why = {k: nonfinite(r, stress=bool(np.all(atoms_list[todo[k]].pbc))) for k, r in enumerate(preds)}
        bad = {k for k, reason in why.items() if reason}
        if not bad:
            return dict(zip(todo, preds))
        for k in sorted(bad):
            fail(todo[k], why[k])
        todo = [i for k, i in enumerate(todo) if k not in bad]
        graphs = [g for k, g in enumerate(graphs) if k not in bad]


def relax_many(atoms_list, calc, fmax: float = 0.05, optimizer: str = "FIRE", cell: bool = False,
               steps: int = 500, optimizer_kwargs: dict | None = None, progress: bool | None = None,
               on_error: str = "raise"):
    """Relax every structure of ``atoms_list`` (ASE Atoms, pymatgen Structure or Molecule) in place; returns a
    list of dicts (converged, steps, energy).

    All active structures are evaluated together in one model call per step; converged ones drop out.
    ``cell=True`` relaxes the cell too, through ``FrechetCellFilter`` (needs a conservative model for stress).
    ``calc``: a :class:`~jmp_calc.JMPCalculator`. Each structure's trajectory is the one a plain ASE relaxation with
    the same optimizer would follow.

    ``on_error="skip"``: a structure that is invalid or becomes invalid (fails the input checks, e.g. two atoms
    closer than the validation limit; the model gives NaN/inf; its cell collapses to under a quarter of its
    volume; the optimizer fails) stops there and its slot is ``{"error": reason, "index": i}``; the others go on.
    A structure invalid from the start is never in a batch, so the others' results are bit-identical to a run
    without it (one that fails later shared the batches of the steps before). ``"raise"`` (default): the first
    such structure raises.
    """
    import ase.optimize
    from ase.filters import FrechetCellFilter
    from tqdm import tqdm

    skip = _check_mode(on_error)
    originals = list(atoms_list)
    errors: dict[int, str] = {}
    atoms_list = []
    for i, obj in enumerate(originals):  # pymatgen Structure/Molecule: relaxed copy, written back
        try:
            atoms_list.append(_as_atoms(obj))
        except Exception as exc:  # noqa: BLE001 - whatever pymatgen raises for a bad object, isolated
            if not skip:
                raise
            errors[i] = f"{type(exc).__name__}: {exc}"
            atoms_list.append(None)
    potential = calc.potential
    if cell and "stress" not in potential.implemented_properties:
        raise ValueError("cell relaxation needs stress: use a conservative model (forces='conservative')")
    opt_cls = getattr(ase.optimize, optimizer, None)
    if opt_cls is None:
        raise ValueError(f"unknown ASE optimizer {optimizer!r}")
    props = ("energy", "forces", "stress") if cell else ("energy", "forces")
    n = len(atoms_list)
    caches, opts, targets = [None] * n, [None] * n, [None] * n
    volumes = [0.0] * n
    for i, atoms in enumerate(atoms_list):
        if atoms is None:
            continue
        c = _Cached(potential, props)
        atoms.calc = c
        target = FrechetCellFilter(atoms) if cell else atoms
        caches[i], targets[i] = c, target
        opts[i] = opt_cls(target, logfile=None, **(optimizer_kwargs or {}))
        volumes[i] = atoms.get_volume() if cell and atoms.pbc.all() else 0.0
    active = [i for i in range(n) if i not in errors]
    n_steps = [0] * n
    converged = [False] * n
    show = progress if progress is not None else n > 20
    bar = tqdm(total=n, desc="relax_many", unit="struct", disable=not show)
    bar.update(len(errors))
    while active:
        preds = evaluate_isolated(potential, atoms_list, active, props, skip, errors,
                                  volumes=volumes if cell else None)
        still = []
        for i in active:
            if i not in preds:  # failed this step
                bar.update(1)
                continue
            caches[i].store(atoms_list[i], preds[i])
            f = targets[i].get_forces()
            if np.sqrt((f**2).sum(axis=1).max()) < fmax:
                converged[i] = True
            elif n_steps[i] >= steps:
                pass
            else:
                try:
                    opts[i].step()
                except Exception as exc:  # noqa: BLE001 - e.g. a linear-algebra failure of the optimizer
                    if not skip:
                        raise
                    errors[i] = f"optimizer {optimizer} failed: {type(exc).__name__}: {exc}"
                    bar.update(1)
                    continue
                n_steps[i] += 1
                still.append(i)
                continue
            bar.update(1)
        active = still
    bar.close()
    for orig, atoms in zip(originals, atoms_list):
        if atoms is not None and orig is not atoms:
            _write_back(orig, atoms)
    return [{"error": errors[i], "index": i} if i in errors else
            {"converged": converged[i], "steps": n_steps[i], "energy": atoms_list[i].get_potential_energy()}
            for i in range(n)]
