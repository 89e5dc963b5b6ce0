"""NVE molecular dynamics and its energy conservation: potential, kinetic and total energy vs time, and the
total-energy drift per atom, with a model shipped inside the package (offline).

* ``--system ethanol`` (default): a gas-phase ethanol molecule, 300 K start, 0.5 fs steps, with ``jmp-mini-s-ethanol``
  (the mini-JMP backbone fine-tuned on GFN2-xTB MD of ethanol with conservative forces, see its model card).
* ``--system Cu55``: a 55-atom Cu icosahedron, 500 K start, 2 fs steps, with the default model ``jmp-mini-emt``.

Writes examples/out/md_energy_<system>.png (or --out).

    python examples/md_energy_conservation.py [--system ethanol|Cu55] [--steps N] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    ap.add_argument("--system", default="ethanol", choices=["ethanol", "Cu55"])
    ap.add_argument("--steps", type=int, default=None, help="default: 600 (ethanol), 200 (Cu55)")
    ap.add_argument("--timestep", type=float, default=None, help="fs; default 0.5 (ethanol), 2 (Cu55)")
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

    from ase.build import molecule

    if args.system == "ethanol":
        atoms, model, t_k = molecule("CH3CH2OH"), "jmp-mini-s-ethanol", 300
        args.steps, args.timestep = args.steps or 600, args.timestep or 0.5
    else:
        atoms, model, t_k = Icosahedron("Cu", noshells=3), "jmp-mini-emt", 500  # 55 atoms
        args.steps, args.timestep = args.steps or 200, args.timestep or 2.0
        atoms.center(vacuum=6.0)
    atoms.calc = JMPCalculator(model, dtype="float64")  # float64 for a clean energy budget
    MaxwellBoltzmannDistribution(atoms, temperature_K=t_k, rng=np.random.default_rng(0))
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
    name = atoms.get_chemical_formula() if args.system == "ethanol" else f"Cu{n}"
    print(f"{name} ({model}): {args.steps} NVE steps of {args.timestep} fs in {wall:.1f} s ({wall / args.steps * 1000:.0f} ms/step); "
          f"T = {temp.mean():.0f} K; total-energy drift {drift:+.3f} meV/atom over {t[-1]:.0f} fs "
          f"(fit {slope:+.2f} meV/atom/ps), fluctuation (std) {total.std() / n * 1000:.3f} meV/atom")
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(6, 5.5), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    ax.plot(t, (e[:, 0] - total[0]) / n * 1000, label="potential")
    ax.plot(t, e[:, 1] / n * 1000, label="kinetic")
    ax.plot(t, (total - total[0]) / n * 1000, "k", lw=2, label="total")
    ax.set_ylabel("energy [meV/atom]\n(potential, total: vs initial total)")
    ax.set_title(f"NVE MD of {args.system} ({args.timestep:g} fs steps, {model})", fontsize=10)
    ax.legend(loc="best")
    ax2.plot(t, (total - total[0]) / n * 1000, "k")
    ax2.set_xlabel("time [fs]")
    ax2.ticklabel_format(useOffset=False)
    ax2.set_ylabel("total drift\n[meV/atom]")
    ax2.set_title(f"drift {drift:+.3f} meV/atom over {t[-1]:.0f} fs", fontsize=9)
    fig.tight_layout()
    path = args.out / f"md_energy_{args.system}.png"
    fig.savefig(path, dpi=120)
    print(f"figure written to {path}")


if __name__ == "__main__":
    main()
