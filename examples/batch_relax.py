"""Relax many adsorbate/slab structures at once with relax_many (one batched model call per step), compare the time
with one-by-one ASE relaxations, and plot the relaxation energies against EMT's.

    python examples/batch_relax.py [--n 24]

Writes examples/out/batch_relax.png.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def structures(n, seed=0):
    from ase.build import add_adsorbate, fcc100, fcc111

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        metal = ["Cu", "Ag", "Au", "Ni", "Pd", "Pt"][i % 6]
        slab = (fcc111 if i % 2 else fcc100)(metal, size=(2, 2, 3), vacuum=6.0)
        add_adsorbate(slab, ["H", "O", "N", "C"][rng.integers(4)], float(rng.uniform(1.4, 2.2)), "ontop")
        slab.rattle(0.05, seed=int(rng.integers(1 << 30)))
        out.append(slab)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ase.calculators.emt import EMT
    from ase.optimize import FIRE

    from jmp_calc import JMPCalculator
    from jmp_calc.simulate import relax_many

    calc = JMPCalculator()
    structs = structures(args.n)
    e0 = [r["energy"] for r in calc.predict_many(structs)]
    batched = [s.copy() for s in structs]
    t0 = time.perf_counter()
    info = relax_many(batched, calc, fmax=0.05, steps=150)
    t_batch = time.perf_counter() - t0
    t0 = time.perf_counter()
    for s in [s.copy() for s in structs]:
        s.calc = calc
        FIRE(s, logfile=None).run(fmax=0.05, steps=150)
    t_single = time.perf_counter() - t0
    print(f"{args.n} relaxations: relax_many {t_batch:.1f} s, one by one {t_single:.1f} s "
          f"({t_single / t_batch:.2f}x); converged {sum(i['converged'] for i in info)}/{args.n}, "
          f"mean {np.mean([i['steps'] for i in info]):.0f} FIRE steps")
    d_model = np.array([i["energy"] - e for i, e in zip(info, e0)])
    d_emt = []
    for s0, s1 in zip(structs, batched):
        a, b = s0.copy(), s1.copy()
        a.calc, b.calc = EMT(), EMT()
        d_emt.append(b.get_potential_energy() - a.get_potential_energy())
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.scatter(d_emt, d_model, s=18)
    lim = [min(min(d_emt), d_model.min()) - 0.1, 0.1]
    ax.plot(lim, lim, "k--", lw=1)
    ax.set_xlabel("EMT energy change along the relaxation [eV]")
    ax.set_ylabel("model energy change [eV]")
    ax.set_title(f"{args.n} slab+adsorbate relaxations")
    fig.tight_layout()
    fig.savefig(args.out / "batch_relax.png", dpi=120)
    print(f"wrote {args.out / 'batch_relax.png'}")


if __name__ == "__main__":
    main()
