"""mini-matbench (MatBench role, downstream): relaxed random fcc EMT alloys with formation energy and bulk modulus.

    python -m experiments.mini_jmp.datagen.mini_matbench --out data/mini/mini_matbench --n 1000 --seed 0

One unit = one structure: a random fcc supercell with 2-16 atoms (primitive or conventional cell repeats), a random
binary (60 %) or ternary alloy of Al Cu Ag Au Ni Pd Pt (every chosen element present), Vegard lattice constant,
rattled 0.05 A, then relaxed with EMT (positions + cell, ase.filters.UnitCellFilter + BFGS, fmax 0.01 eV/A, at
most 300 steps). Targets in ``info``:
* ``formation_energy_per_atom`` (eV/atom): (E - sum_i n_i e_i) / N, e_i = EMT energy per atom of the relaxed
  elemental fcc crystal (E-V fit);
* ``mixing_energy_per_atom`` (eV/atom): the same at fixed volume - each element's fcc energy taken at the alloy's
  volume per atom, so the size-mismatch (elastic) term is excluded and only the chemical part remains;
* ``bulk_modulus`` (GPa): Birch-Murnaghan fit (ase.eos) to 7 isotropic strains of +-3 % in lattice length,
  atoms relaxed positions kept fixed;
* ``volume_per_atom`` (A^3), ``composition`` (e.g. Cu2Au1Pt1), ``relax_converged``, ``fold`` (0-4, seeded) and
  ``id``; ``folds.json`` lists the ids of each fold for MatBench-style 5-fold CV.
The frame carries the relaxed structure's energy, forces and stress. Files train / val / test: 80 / 10 / 10 %.
"""

from __future__ import annotations

import argparse
from functools import lru_cache
from pathlib import Path

import numpy as np

from .common import assign_splits, command_line, run_chunked, single_point, unit_rng, write_json

DATASET = "mini-matbench"
METHOD = "ASE EMT (ase.calculators.emt); E-V fit with ase.eos (Birch-Murnaghan)"
METALS = ["Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt"]
CELLS = [  # (cubic conventional?, repeat) -> atoms = (4 if cubic else 1) * prod(repeat)
    (False, (1, 1, 2)), (False, (1, 1, 3)), (False, (1, 2, 2)), (False, (1, 1, 4)), (False, (1, 2, 3)),
    (False, (2, 2, 2)), (False, (1, 2, 4)), (False, (2, 2, 3)), (False, (2, 2, 4)), (True, (1, 1, 1)),
    (True, (1, 1, 2)), (True, (1, 1, 3)), (True, (1, 2, 2)),
]


def _eos(atoms, strain=0.03, n=7):
    from ase.calculators.emt import EMT
    from ase.eos import EquationOfState
    from ase.units import GPa

    cell0 = atoms.cell.array.copy()
    vols, ens = [], []
    for s in np.linspace(1 - strain, 1 + strain, n):
        a = atoms.copy()
        a.set_cell(cell0 * s, scale_atoms=True)
        a.calc = EMT()
        vols.append(a.get_volume())
        ens.append(a.get_potential_energy())
    v0, e0, b = EquationOfState(vols, ens, eos="birchmurnaghan").fit()
    return float(v0), float(e0), float(b / GPa)


@lru_cache(maxsize=None)
def elemental_reference(symbol: str):
    """EMT fcc ground state of an element: (energy per atom, volume per atom, bulk modulus GPa, lattice constant)."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from .mini_oc20 import EMT_A

    atoms = bulk(symbol, "fcc", a=EMT_A[symbol])
    v0, e0, b = _eos(atoms, strain=0.04, n=11)
    atoms = bulk(symbol, "fcc", a=(4 * v0) ** (1 / 3))
    v0, e0, b = _eos(atoms, strain=0.01, n=9)
    atoms = bulk(symbol, "fcc", a=(4 * v0) ** (1 / 3))
    atoms.calc = EMT()
    return float(atoms.get_potential_energy()), float(v0), float(b), float((4 * v0) ** (1 / 3))


def element_energy_at_volume(symbol: str, volume_per_atom: float) -> float:
    from ase.build import bulk
    from ase.calculators.emt import EMT

    atoms = bulk(symbol, "fcc", a=(4 * volume_per_atom) ** (1 / 3))
    atoms.calc = EMT()
    return float(atoms.get_potential_energy())


def random_alloy(rng):
    from ase.build import bulk

    cubic, rep = CELLS[rng.integers(len(CELLS))]
    n_atoms = (4 if cubic else 1) * int(np.prod(rep))
    k = 2 if (rng.random() < 0.6 or n_atoms < 3) else 3
    elems = list(rng.choice(METALS, size=k, replace=False))
    symbols = elems + list(rng.choice(elems, size=n_atoms - k))
    rng.shuffle(symbols)
    a = float(np.mean([elemental_reference(s)[3] for s in symbols]))
    atoms = bulk("Cu", "fcc", a=a, cubic=cubic).repeat(rep)
    atoms.set_chemical_symbols(symbols)
    atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
    return atoms


def structure(unit: dict, seed: int, n: int):
    from ase.calculators.emt import EMT
    from ase.filters import UnitCellFilter
    from ase.optimize import BFGS

    rng = unit_rng(seed, unit["id"])
    atoms = random_alloy(rng)
    atoms.calc = EMT()
    opt = BFGS(UnitCellFilter(atoms), logfile=None)
    converged = bool(opt.run(fmax=0.01, steps=300))
    atoms.wrap()
    n_at = len(atoms)
    energy = float(atoms.get_potential_energy())
    symbols = atoms.get_chemical_symbols()
    vpa = atoms.get_volume() / n_at
    e_form = (energy - sum(elemental_reference(s)[0] for s in symbols)) / n_at
    e_mix = (energy - sum(element_energy_at_volume(s, vpa) for s in set(symbols)
                          for _ in range(symbols.count(s)))) / n_at
    _, _, b = _eos(atoms)
    counts = {s: symbols.count(s) for s in sorted(set(symbols))}
    frame = single_point(atoms, stress=True, id=int(unit["id"]), fold=int(unit["fold"]),
                         composition="".join(f"{s}{c}" for s, c in counts.items()),
                         formation_energy_per_atom=round(e_form, 8), mixing_energy_per_atom=round(e_mix, 8),
                         bulk_modulus=round(b, 4), volume_per_atom=round(vpa, 6), relax_converged=converged)
    frame.set_tags(0)
    return [frame]


def generate(out: Path, n: int = 1000, seed: int = 0, chunk_size: int = 50, stop_after_chunks=None,
             progress: bool = True):
    splits = assign_splits(n, seed, fractions=(0.8, 0.1, 0.1))
    folds = np.random.default_rng([seed, 5]).permutation(n) % 5
    units = [{"id": i, "split": splits[i], "fold": int(folds[i])} for i in range(n)]
    refs = {s: dict(zip(("energy_per_atom", "volume_per_atom", "bulk_modulus_GPa", "a"), elemental_reference(s)))
            for s in METALS}
    params = {"n": n, "seed": seed, "version": 1}
    meta = run_chunked(out, dataset=DATASET, units=units, make_frames=lambda u: structure(u, seed, n),
                       chunk_size=chunk_size, params=params, method=METHOD,
                       command=command_line("mini_matbench", out, n=n, seed=seed), desc="mini-matbench EMT alloys",
                       stop_after_chunks=stop_after_chunks, progress=progress,
                       extra_meta={"elemental_references": refs, "folds_file": "folds.json"})
    if meta is not None:
        write_json(Path(out) / "folds.json", {"seed": seed, "n": n, "key": "info['id']",
                                              "folds": [[u["id"] for u in units if u["fold"] == k] for k in range(5)]})
    return meta


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=1000, help="number of structures")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk-size", type=int, default=50)
    args = ap.parse_args(argv)
    return generate(args.out, args.n, args.seed, args.chunk_size)


if __name__ == "__main__":
    main()
