"""NVE molecular dynamics of a Cu nanoparticle (55-atom icosahedron, 500 K start) with the embedded model, and its
energy conservation: potential, kinetic and total energy vs time, and the total-energy drift per atom.

The embedded model was trained on EMT metals (its H/C/N/O data are adsorbates on metal surfaces, not gas-phase
molecules), so the "molecule" here is a metal cluster. Writes examples/out/md_energy_Cu55.png (or --out).

    python examples/md_energy_conservation.py [--steps 200] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--timestep", type=float, default=2.0, help="fs")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ase import units
    from ase.cluster import Icosahedron
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
    from ase.md.verlet import VelocityVerlet

    from jmp_calc import JMPCalculator

    atoms = Icosahedron("Cu", noshells=3)  # 55 atoms
    atoms.center(vacuum=6.0)
    atoms.calc = JMPCalculator(dtype="float64")  # embedded model, float64 for a clean energy budget
    MaxwellBoltzmannDistribution(atoms, temperature_K=500, rng=np.random.default_rng(0))
    Stationary(atoms)
    ZeroRotation(atoms)
    dyn = VelocityVerlet(atoms, timestep=args.timestep * units.fs)
    rows = []
    dyn.attach(lambda: rows.append((atoms.get_potential_energy(), atoms.get_kinetic_energy())), interval=1)
    t0 = time.perf_counter()
    dyn.run(args.steps)
    wall = time.perf_counter() - t0
    e = np.array(rows)
    n = len(atoms)
    total = e.sum(1)
    t = np.arange(len(e)) * args.timestep
    slope = np.polyfit(t, total / n, 1)[0] * 1000 * 1000  # meV/atom/ps
    drift = (total[-1] - total[0]) / n * 1000
    temp = e[:, 1] / n / (1.5 * units.kB)
    print(f"Cu{n}: {args.steps} NVE steps of {args.timestep} fs in {wall:.1f} s ({wall / args.steps * 1000:.0f} ms/step); "
          f"T = {temp.mean():.0f} K; total-energy drift {drift:+.3f} meV/atom over {t[-1]:.0f} fs "
          f"(fit {slope:+.2f} meV/atom/ps), fluctuation (std) {total.std() / n * 1000:.3f} meV/atom")
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(6, 5.5), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    ax.plot(t, (e[:, 0] - total[0]) / n * 1000, label="potential")
    ax.plot(t, e[:, 1] / n * 1000, label="kinetic")
    ax.plot(t, (total - total[0]) / n * 1000, "k", lw=2, label="total")
    ax.set_ylabel("energy [meV/atom]\n(potential, total: vs initial total)")
    ax.set_title(f"NVE MD of a Cu{n} icosahedron ({args.timestep:g} fs steps, embedded model)")
    ax.legend(loc="best")
    ax2.plot(t, (total - total[0]) / n * 1000, "k")
    ax2.set_xlabel("time [fs]")
    ax2.set_ylabel("total drift\n[meV/atom]")
    ax2.set_title(f"drift {drift:+.3f} meV/atom over {t[-1]:.0f} fs", fontsize=9)
    fig.tight_layout()
    path = args.out / "md_energy_Cu55.png"
    fig.savefig(path, dpi=120)
    print(f"figure written to {path}")


if __name__ == "__main__":
    main()
