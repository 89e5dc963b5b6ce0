"""mini-oc20 (OC20 role): EMT relaxation trajectories of small adsorbates on fcc(111)/(100) metal and binary-alloy
slabs.

    python -m experiments.mini_jmp.datagen.mini_oc20 --out data/mini/mini_oc20 --n 350 --seed 0

One unit = one adsorbate+slab system relaxed with BFGS (fmax 0.05 eV/A, at most ``--max-steps`` steps); every
BFGS step is a frame (as in OC20 S2EF). Slabs: Al Cu Ag Au Ni Pd Pt or a random binary alloy of two of them
(Vegard lattice constant), (2x2) or (3x3) surface cells, 3 or 4 layers, 6-7 A vacuum each side, periodic in x/y only.
Tags as OC20: 0 = fixed sub-surface atoms (bottom layer(s), FixAtoms), 1 = free slab atoms, 2 = adsorbate.
Forces are stored unconstrained (fixed atoms keep their EMT forces; read with get_forces(apply_constraint=False)).
Splits by system: 90 / 5 / 5 %. Extends the logic of experiments/mini_jmp/datagen/emt_surfaces.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .common import assign_splits, command_line, run_chunked, single_point, unit_rng

DATASET = "mini-oc20"
METHOD = "ASE EMT (ase.calculators.emt)"
METALS = ["Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt"]
# binding atom first at the origin, the rest above it (+z), rough gas-phase bond lengths
ADSORBATES = {
    "H": [("H", 0, 0, 0)],
    "O": [("O", 0, 0, 0)],
    "N": [("N", 0, 0, 0)],
    "C": [("C", 0, 0, 0)],
    "OH": [("O", 0, 0, 0), ("H", 0, 0, 0.97)],
    "CO": [("C", 0, 0, 0), ("O", 0, 0, 1.15)],
    "NO": [("N", 0, 0, 0), ("O", 0, 0, 1.17)],
    "CH": [("C", 0, 0, 0), ("H", 0, 0, 1.09)],
    "NH": [("N", 0, 0, 0), ("H", 0, 0, 1.03)],
    "CH2": [("C", 0, 0, 0), ("H", 0.89, 0, 0.63), ("H", -0.89, 0, 0.63)],
    "NH2": [("N", 0, 0, 0), ("H", 0.82, 0, 0.58), ("H", -0.82, 0, 0.58)],
    "OH2": [("O", 0, 0, 0), ("H", 0.76, 0, 0.59), ("H", -0.76, 0, 0.59)],
    "CH3": [("C", 0, 0, 0), ("H", 1.03, 0, 0.36), ("H", -0.51, 0.89, 0.36), ("H", -0.51, -0.89, 0.36)],
    "COH": [("C", 0, 0, 0), ("O", 0, 0, 1.33), ("H", 0.9, 0, 1.7)],
    "CHO": [("C", 0, 0, 0), ("O", 1.05, 0, 0.6), ("H", -0.9, 0, 0.6)],
    "N2": [("N", 0, 0, 0), ("N", 0, 0, 1.10)],
}
EMT_A = {"Al": 4.05, "Cu": 3.61, "Ag": 4.09, "Au": 4.08, "Ni": 3.52, "Pd": 3.89, "Pt": 3.92}


def make_system(rng: np.random.Generator):
    from ase import Atoms
    from ase.build import add_adsorbate, fcc100, fcc111
    from ase.constraints import FixAtoms

    if rng.random() < 0.5:
        metals = [METALS[rng.integers(len(METALS))]]
    else:
        metals = list(rng.choice(METALS, size=2, replace=False))
    a = float(np.mean([EMT_A[m] for m in metals]))
    if len(metals) == 2:
        x = float(rng.uniform(0.2, 0.8))
        a = EMT_A[metals[0]] * x + EMT_A[metals[1]] * (1 - x)
    facet = "111" if rng.random() < 0.6 else "100"
    builder = fcc111 if facet == "111" else fcc100
    n_layers = 3 if rng.random() < 0.6 else 4
    size = (2, 2, n_layers) if rng.random() < 0.65 else (3, 3, n_layers)
    slab = builder(metals[0], size=size, a=a, vacuum=float(rng.uniform(6.0, 7.0)))
    if len(metals) == 2:
        symbols = np.where(rng.random(len(slab)) < x, metals[0], metals[1])
        if len(set(symbols)) < 2:  # keep it an alloy
            symbols[rng.integers(len(symbols))] = metals[1] if symbols[0] == metals[0] else metals[0]
        slab.set_chemical_symbols(list(symbols))
    z = slab.positions[:, 2]
    layers = np.unique(np.round(z, 2))
    n_fixed_layers = 1 if n_layers == 3 else 2
    fixed = z < layers[n_fixed_layers - 1] + 0.1
    n_slab = len(slab)

    name = list(ADSORBATES)[rng.integers(len(ADSORBATES))]
    spec = ADSORBATES[name]
    ads = Atoms([s for s, *_ in spec], positions=[p for _, *p in spec])
    ads.rotate(float(rng.uniform(0, 360)), "z")
    sites = ["ontop", "hollow", "bridge"] if facet == "100" else ["ontop", "fcc", "hcp", "bridge"]
    site = sites[rng.integers(len(sites))]
    add_adsorbate(slab, ads, float(rng.uniform(1.2, 2.2)), site)
    slab.positions[n_slab:, :2] += rng.normal(0, 0.15, 2)  # off-site start
    tags = np.where(fixed, 0, 1).tolist() + [2] * len(ads)
    slab.set_tags(tags)
    slab.set_constraint(FixAtoms(mask=list(fixed) + [False] * len(ads)))
    slab.rattle(0.05, seed=int(rng.integers(1 << 30)))
    slab.info.pop("adsorbate_info", None)
    desc = {"adsorbate": name, "surface": "".join(f"{m}" for m in metals) + f"({facet})", "site": site}
    return slab, desc


def trajectory(unit: dict, seed: int, max_steps: int):
    from ase.calculators.emt import EMT
    from ase.optimize import BFGS

    rng = unit_rng(seed, unit["id"])
    slab, desc = make_system(rng)
    slab.calc = EMT()
    frames = []
    opt = BFGS(slab, logfile=None, maxstep=0.2)

    def record():
        frames.append(single_point(slab, stress=False, sid=int(unit["id"]), fid=len(frames), **desc))

    opt.attach(record, interval=1)
    try:
        opt.run(fmax=0.05, steps=max_steps)
    except Exception:  # noqa: BLE001 - an exploding relaxation keeps the frames so far
        pass
    return frames


def generate(out: Path, n: int = 350, seed: int = 0, max_steps: int = 50, chunk_size: int = 20,
             stop_after_chunks=None, progress: bool = True):
    splits = assign_splits(n, seed)
    units = [{"id": i, "split": splits[i]} for i in range(n)]
    params = {"n": n, "seed": seed, "max_steps": max_steps, "version": 1}
    return run_chunked(out, dataset=DATASET, units=units, make_frames=lambda u: trajectory(u, seed, max_steps),
                       chunk_size=chunk_size, params=params, method=METHOD,
                       command=command_line("mini_oc20", out, n=n, seed=seed, max_steps=max_steps),
                       desc="mini-oc20 EMT relaxations", stop_after_chunks=stop_after_chunks, progress=progress)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=350, help="number of relaxation trajectories")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=50)
    ap.add_argument("--chunk-size", type=int, default=20)
    args = ap.parse_args(argv)
    return generate(args.out, args.n, args.seed, args.max_steps, args.chunk_size)


if __name__ == "__main__":
    main()
