"""Generate a small metal / adsorbate dataset with ASE's EMT (seconds per hundred frames, no downloads).

Frames (extxyz with energy, forces, stress where periodic in 3D, tags 0/1/2 as in OC20):
* relaxation trajectories (every BFGS step) of H, C, N, O adsorbates on fcc(111)/(100) slabs of Cu, Ag, Au,
  Ni, Pd, Pt, Al, bottom layer fixed;
* rattled and strained bulk supercells of the same metals (for stress and phonons).

    python -m experiments.mini_jmp.datagen.emt_surfaces --out data/emt --n-slabs 120 --n-bulk 300 --seed 0

Deterministic for a seed; writes train/valid/test splits atomically (a crash leaves no partial file).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

METALS = ["Cu", "Ag", "Au", "Ni", "Pd", "Pt", "Al"]
ADSORBATES = ["H", "O", "N", "C"]


def _slab(rng):
    from ase.build import add_adsorbate, fcc100, fcc111
    from ase.constraints import FixAtoms

    metal = METALS[rng.integers(len(METALS))]
    builder = fcc111 if rng.random() < 0.6 else fcc100
    slab = builder(metal, size=(2, 2, 3), vacuum=6.0)
    ads = ADSORBATES[rng.integers(len(ADSORBATES))]
    site = ["ontop", "hollow", "bridge"][rng.integers(3)] if builder is fcc100 else \
        ["ontop", "fcc", "hcp", "bridge"][rng.integers(4)]
    add_adsorbate(slab, ads, float(rng.uniform(1.0, 2.2)), site)
    z = slab.positions[:, 2]
    layers = np.unique(np.round(z[:-1], 2))
    tags = np.where(np.isclose(z, layers[-1], atol=0.1), 1, 0)
    tags[-1] = 2
    slab.set_tags(tags)
    slab.set_constraint(FixAtoms(mask=np.isclose(z, layers[0], atol=0.1)))
    slab.rattle(0.05, seed=int(rng.integers(1 << 30)))
    return slab


def _bulk(rng):
    from ase.build import bulk

    metal = METALS[rng.integers(len(METALS))]
    atoms = bulk(metal, "fcc", cubic=True).repeat((2, 2, 2) if rng.random() < 0.5 else (1, 1, 2))
    strain = np.eye(3) + rng.normal(0, 0.02, (3, 3))
    atoms.set_cell(atoms.cell.array @ (0.5 * (strain + strain.T)), scale_atoms=True)
    atoms.rattle(float(rng.uniform(0.01, 0.12)), seed=int(rng.integers(1 << 30)))
    atoms.set_tags(0)
    return atoms


def _label(atoms):
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = atoms.copy()
    atoms.calc = EMT()
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(apply_constraint=False)}
    if atoms.pbc.all():
        results["stress"] = atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def generate(n_slabs: int, n_bulk: int, seed: int, max_steps: int = 25):
    from ase.calculators.emt import EMT
    from ase.optimize import BFGS
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    groups = []  # frames of one trajectory stay in one split
    for _ in tqdm(range(n_slabs), desc="EMT slab relaxations", unit="traj"):
        slab = _slab(rng)
        slab.calc = EMT()
        frames = []
        opt = BFGS(slab, logfile=None)
        opt.attach(lambda frames=frames, slab=slab: frames.append(_label(slab)), interval=1)  # this loop's slab
        opt.run(fmax=0.05, steps=max_steps)
        groups.append(frames)
    for _ in tqdm(range(n_bulk), desc="EMT bulk", unit="frame"):
        groups.append([_label(_bulk(rng))])
    return groups


def _write_atomic(path: Path, frames) -> None:
    from ase.io import write

    fd, tmp = tempfile.mkstemp(prefix=path.name, dir=path.parent)
    os.close(fd)
    try:
        write(tmp, frames, format="extxyz")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n-slabs", type=int, default=120)
    ap.add_argument("--n-bulk", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    groups = generate(args.n_slabs, args.n_bulk, args.seed)
    order = np.random.default_rng(args.seed + 1).permutation(len(groups))
    n_valid = n_test = max(1, len(groups) // 10)
    splits = {"test": order[:n_test], "valid": order[n_test:n_test + n_valid], "train": order[n_test + n_valid:]}
    for name, idx in splits.items():
        frames = [f for i in idx for f in groups[i]]
        _write_atomic(args.out / f"{name}.extxyz", frames)
        print(f"{name}: {len(frames)} frames from {len(idx)} trajectories -> {args.out / f'{name}.extxyz'}")


if __name__ == "__main__":
    main()
