"""Energy conservation of the embedded (conservative) model: NVE velocity Verlet of bulk Cu.

    nice -n 5 .venv/bin/python benchmarks/nve_drift.py                 # 32 atoms, 300 K, 2 fs, 10 ps or 300 s
    nice -n 5 .venv/bin/python benchmarks/nve_drift.py --repeat 3 --ps 10 --budget 600 --dtype float32

Runs until the simulated time (``--ps``) or the wall-clock budget (``--budget`` seconds) is reached, whichever comes
first, then prints the drift of the total energy (slope of a least-squares line, meV/atom/ps), the total change
(last minus first total energy), the RMS fluctuation about the line, and, when the run was cut short, the drift
extrapolated linearly to the requested length (an extrapolation, said so). Writes ``benchmarks/out/nve_drift.png``
(total, potential and kinetic energy vs time) and ``benchmarks/out/nve_drift.csv``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=2, help="cubic Cu cells per direction (2: 32 atoms, 3: 108)")
    p.add_argument("--temperature", type=float, default=300.0)
    p.add_argument("--dt", type=float, default=2.0, help="time step, fs")
    p.add_argument("--ps", type=float, default=10.0, help="simulated time wanted, ps")
    p.add_argument("--budget", type=float, default=300.0, help="wall-clock budget, s")
    p.add_argument("--dtype", default="float64")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import torch
    from ase import units
    from ase.build import bulk

    from jmp_calc import JMPCalculator
    from jmp_calc.simulate import set_maxwell_boltzmann_momenta

    torch.set_num_threads(args.threads)
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((args.repeat,) * 3)
    n = len(atoms)
    rng = np.random.default_rng(args.seed)
    set_maxwell_boltzmann_momenta(atoms, 2 * args.temperature, rng)  # half goes to potential; no drift
    pot = JMPCalculator("jmp-mini-emt", dtype=args.dtype).potential  # the model of the committed results
    masses = atoms.get_masses()[:, None]
    dt = args.dt * units.fs
    n_steps = int(round(args.ps * 1000 / args.dt))

    def forces(a):
        (r,) = pot.predict([a], properties=("energy", "forces"))
        return r["energy"], r["forces"]

    epot, f = forces(atoms)
    t_ps, e_pot, e_kin = [0.0], [epot], [atoms.get_kinetic_energy()]
    t0 = time.perf_counter()
    step = 0
    while step < n_steps and time.perf_counter() - t0 < args.budget:
        p_half = atoms.get_momenta() + 0.5 * dt * f
        atoms.set_positions(atoms.get_positions() + dt * p_half / masses)
        epot, f = forces(atoms)
        atoms.set_momenta(p_half + 0.5 * dt * f)
        step += 1
        t_ps.append(step * args.dt / 1000)
        e_pot.append(epot)
        e_kin.append(atoms.get_kinetic_energy())
    wall = time.perf_counter() - t0
    t_ps, e_pot, e_kin = map(np.asarray, (t_ps, e_pot, e_kin))
    e_tot = e_pot + e_kin
    slope, icpt = np.polyfit(t_ps, e_tot, 1)
    drift = slope / n * 1000  # meV/atom/ps
    total = (e_tot[-1] - e_tot[0]) / n * 1000
    rms = np.sqrt(np.mean((e_tot - (slope * t_ps + icpt)) ** 2)) / n * 1000
    temp = e_kin / (1.5 * n * units.kB)
    print(f"bulk Cu, {n} atoms, {args.dtype}, dt = {args.dt} fs, T0 = {args.temperature} K "
          f"(mean T {temp[len(temp) // 5:].mean():.0f} K after equipartition)")
    print(f"simulated {t_ps[-1]:.3f} ps in {step} steps, {wall:.0f} s wall ({wall / max(step, 1):.3f} s/step)")
    print(f"drift (slope of a fitted line): {drift:+.4f} meV/atom/ps")
    print(f"total change E_tot(end) - E_tot(0): {total:+.4f} meV/atom over {t_ps[-1]:.3f} ps")
    print(f"RMS fluctuation of E_tot about the line: {rms:.4f} meV/atom "
          f"(kinetic energy fluctuates by {e_kin.std() / n * 1000:.1f} meV/atom)")
    if t_ps[-1] < args.ps:
        print(f"cut short by the {args.budget:.0f} s budget: {args.ps} ps would take ~{n_steps * wall / step / 60:.0f} "
              f"min; linear EXTRAPOLATION of the drift to {args.ps} ps: {drift * args.ps:+.3f} meV/atom "
              "(assumes the drift stays linear)")
    OUT.mkdir(exist_ok=True)
    np.savetxt(OUT / "nve_drift.csv", np.c_[t_ps, e_tot, e_pot, e_kin], delimiter=",",
               header="time_ps,total_eV,potential_eV,kinetic_eV")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    ref = e_tot[0]
    ax1.plot(t_ps, (e_pot - ref) / n * 1000, label="potential", lw=0.8)
    ax1.plot(t_ps, e_kin / n * 1000, label="kinetic", lw=0.8)
    ax1.plot(t_ps, (e_tot - ref) / n * 1000, label="total", lw=1.2, color="k")
    ax1.set_ylabel("meV/atom (potential, total: minus E_tot(0))")
    ax1.legend(loc="center right")
    ax1.set_title(f"NVE, bulk Cu {n} atoms, jmp-mini-emt {args.dtype}, dt {args.dt} fs")
    ax2.plot(t_ps, (e_tot - ref) / n * 1000, color="k", lw=0.8, label="total")
    ax2.plot(t_ps, (slope * t_ps + icpt - ref) / n * 1000, "r--", lw=1, label=f"fit: {drift:+.3f} meV/atom/ps")
    ax2.set_xlabel("time (ps)")
    ax2.set_ylabel("E_tot - E_tot(0) (meV/atom)")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(OUT / "nve_drift.png", dpi=110)
    print(f"wrote {OUT / 'nve_drift.png'}")


if __name__ == "__main__":
    main()
