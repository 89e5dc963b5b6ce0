"""NVE molecular dynamics and its energy conservation: potential, kinetic and total energy vs time, and the drift of
the total energy per atom, with a model shipped inside the package (offline; default: the default model of
``JMPCalculator()``, which routes a molecule to its ``molecules`` head and a metal to its ``surfaces`` head).

* ``--system ethanol`` (default): a gas-phase ethanol molecule, 300 K start, 0.5 fs steps.
* ``--system Cu108``: bulk fcc Cu, 3x3x3 conventional cells (108 atoms, periodic), 300 K start, 2 fs steps.
* ``--system Cu55``: a 55-atom Cu icosahedron in vacuum, 500 K start, 2 fs steps.

Velocity Verlet (ASE), float64 by default. Runs ``--ps`` picoseconds (or ``--steps``), or until ``--budget`` seconds of
wall clock have passed, whichever comes first (a cut-short run says so). Every ``--checkpoint`` seconds of wall clock
and at the end it writes ``OUT/NAME_<system>.csv`` (time, total/potential/kinetic energy, every ``--sample-fs`` fs and
the last step) and redraws ``OUT/NAME.png`` with one panel per system whose CSV is in OUT, so a killed or cut-short
run leaves its partial result. It reports the drift of the total energy as the slope of a least-squares line times
the run length, the last-minus-first change, and the RMS fluctuation about the line (all meV/atom).

    python examples/md_energy_conservation.py [--system ethanol|Cu108|Cu55] [--ps 10] [--model NAME] [--out DIR]
    nice -n 5 env OMP_NUM_THREADS=1 python examples/md_energy_conservation.py --system Cu108 --ps 10 \\
        --out examples/results --name nve_10ps > cu108.log &
    python examples/md_energy_conservation.py --plot-only --out examples/results --name nve_10ps
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SYSTEMS = ("ethanol", "Cu108", "Cu55")
#: start temperature (K) and time step (fs) of each system
DEFAULTS = {"ethanol": (300.0, 0.5), "Cu108": (300.0, 2.0), "Cu55": (500.0, 2.0)}
CSV_HEADER = "time_fs,total_eV,potential_eV,kinetic_eV"


@dataclass(frozen=True)
class Drift:
    """Total-energy conservation of one run, in meV/atom."""

    fitted: float  #: slope of a least-squares line times the run length
    change: float  #: last minus first total energy
    rms: float  #: RMS fluctuation of the total energy about the fitted line
    length_fs: float

    @classmethod
    def of(cls, t_fs: np.ndarray, total: np.ndarray, n_atoms: int) -> "Drift":
        e = total / n_atoms * 1000
        if len(t_fs) < 2:
            return cls(0.0, 0.0, 0.0, 0.0)
        slope, icpt = np.polyfit(t_fs, e, 1)
        length = float(t_fs[-1] - t_fs[0])
        return cls(float(slope * length), float(e[-1] - e[0]),
                   float(np.sqrt(np.mean((e - (slope * t_fs + icpt)) ** 2))), length)

    def __str__(self) -> str:
        return (f"drift over {self.length_fs / 1000:.3f} ps: fitted slope x length {self.fitted:+.4f} meV/atom, "
                f"last - first {self.change:+.4f} meV/atom, RMS fluctuation {self.rms:.4f} meV/atom")


def build(system: str):
    from ase.build import bulk, molecule
    from ase.cluster import Icosahedron

    if system == "ethanol":
        return molecule("CH3CH2OH")
    if system == "Cu108":
        return bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3))
    atoms = Icosahedron("Cu", noshells=3)  # 55 atoms
    atoms.center(vacuum=6.0)
    return atoms


def read_csv(path: Path):
    """(meta, data) of a CSV this example wrote; meta holds system, n_atoms, model, dtype, timestep_fs, t0_K."""
    meta = {}
    with open(path) as f:
        for line in f:
            if not line.startswith("#"):
                break
            if "=" in line:
                k, v = line[1:].strip().split("=", 1)
                meta[k.strip()] = v.strip()
    return meta, np.loadtxt(path, delimiter=",", comments="#", ndmin=2)


def write_csv(path: Path, meta: dict, data: np.ndarray) -> None:
    head = "\n".join(f"{k} = {v}" for k, v in meta.items()) + "\n" + CSV_HEADER
    tmp = path.with_suffix(".csv.tmp")
    np.savetxt(tmp, data, delimiter=",", header=head, fmt=("%.2f", "%.10f", "%.10f", "%.10f"))
    tmp.replace(path)


def plot(out: Path, name: str) -> Path | None:
    """One panel per system with a CSV OUT/NAME_<system>.csv: total, potential, kinetic energy vs time."""
    runs = [(s, *read_csv(out / f"{name}_{s}.csv")) for s in SYSTEMS if (out / f"{name}_{s}.csv").exists()]
    if not runs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(runs), figsize=(6.2 * len(runs), 6.2), squeeze=False,
                             gridspec_kw={"height_ratios": [2, 1]})
    for col, (system, meta, d) in enumerate(runs):
        n = int(meta["n_atoms"])
        t_ps, total, pot, kin = d[:, 0] / 1000, d[:, 1], d[:, 2], d[:, 3]
        drift = Drift.of(d[:, 0], total, n)
        ref = total[0]
        ax, ax2 = axes[0, col], axes[1, col]
        ax.plot(t_ps, (pot - ref) / n * 1000, lw=0.6, label="potential")
        ax.plot(t_ps, kin / n * 1000, lw=0.6, label="kinetic")
        ax.plot(t_ps, (total - ref) / n * 1000, "k", lw=1.4, label="total")
        ax.set_ylabel("meV/atom\n(potential, total: minus initial total)")
        ax.set_title(f"NVE {system} ({n} atoms), {meta['model']} {meta['dtype']}, {meta['timestep_fs']} fs steps, "
                     f"{meta['t0_K']} K start", fontsize=9)
        ax.legend(loc="center right", fontsize=8)
        e = (total - ref) / n * 1000
        slope, icpt = np.polyfit(d[:, 0], e, 1) if len(e) > 1 else (0.0, e[0])
        ax2.plot(t_ps, e, "k", lw=0.6, label="total")
        ax2.plot(t_ps, slope * d[:, 0] + icpt, "r--", lw=1, label=f"fit: {drift.fitted:+.3f} meV/atom over run")
        ax2.ticklabel_format(useOffset=False)
        ax2.set_xlabel("time (ps)")
        ax2.set_ylabel("E_tot - E_tot(0)\n(meV/atom)")
        ax2.legend(loc="best", fontsize=8)
        ax2.set_title(f"{drift.length_fs / 1000:.2f} ps: last - first {drift.change:+.3f}, "
                      f"RMS {drift.rms:.3f} meV/atom", fontsize=9)
    fig.tight_layout()
    path = out / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    ap.add_argument("--name", default=None, help="file stem of the CSV/PNG; default md_energy (nve_<ps>ps with --ps)")
    ap.add_argument("--system", default="ethanol", choices=SYSTEMS)
    ap.add_argument("--model", default=None, help="shipped model name or path; default: the default model")
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    ap.add_argument("--ps", type=float, default=None, help="simulated time, ps")
    ap.add_argument("--steps", type=int, default=None, help="number of steps (default 600, or --ps worth)")
    ap.add_argument("--timestep", type=float, default=None, help="fs; default 0.5 (ethanol), 2 (Cu)")
    ap.add_argument("--temperature", type=float, default=None, help="K; default 300 (500 for Cu55)")
    ap.add_argument("--budget", type=float, default=None, help="wall-clock limit, s (a cut-short run says so)")
    ap.add_argument("--checkpoint", type=float, default=120.0, help="wall-clock s between CSV/PNG writes")
    ap.add_argument("--sample-fs", type=float, default=5.0, help="CSV sampling interval, fs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot-only", action="store_true", help="redraw OUT/NAME.png from the CSVs, run nothing")
    args = ap.parse_args(argv)
    if args.name is None:
        args.name = f"nve_{args.ps:g}ps" if args.ps else "md_energy"
    args.out.mkdir(parents=True, exist_ok=True)
    if args.plot_only:
        for s in SYSTEMS:
            p = args.out / f"{args.name}_{s}.csv"
            if p.exists():
                meta, d = read_csv(p)
                print(f"{s}: {Drift.of(d[:, 0], d[:, 1], int(meta['n_atoms']))}")
        print(f"figure written to {plot(args.out, args.name)}")
        return

    from ase import units
    from ase.md.verlet import VelocityVerlet

    from jmp_calc import JMPCalculator
    from jmp_calc.simulate import set_maxwell_boltzmann_momenta

    t_k, dt = DEFAULTS[args.system]
    t_k = args.temperature or t_k
    dt = args.timestep or dt
    n_steps = args.steps if args.steps is not None else (int(round(args.ps * 1000 / dt)) if args.ps else 600)
    atoms = build(args.system)
    calc = JMPCalculator(args.model, dtype=args.dtype)
    atoms.calc = calc
    model = calc.model.card.name or str(args.model)
    n = len(atoms)
    set_maxwell_boltzmann_momenta(atoms, t_k, np.random.default_rng(args.seed))  # no drift; no rotation if open
    meta = {"system": args.system, "n_atoms": n, "model": model, "dtype": args.dtype, "timestep_fs": f"{dt:g}",
            "t0_K": f"{t_k:g}", "steps_requested": n_steps}
    stride = max(1, int(round(args.sample_fs / dt)))
    csv = args.out / f"{args.name}_{args.system}.csv"
    dyn = VelocityVerlet(atoms, timestep=dt * units.fs)
    rows = []  # every step: (time fs, total, potential, kinetic)

    def record():
        pot, kin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
        rows.append((dyn.nsteps * dt, pot + kin, pot, kin))

    def save(final: bool):
        e = np.array(rows)
        keep = np.zeros(len(e), bool)
        keep[::stride] = keep[-1] = True
        write_csv(csv, {**meta, "steps_done": len(e) - 1, "complete": final and len(e) - 1 >= n_steps}, e[keep])
        plot(args.out, args.name)
        d = Drift.of(e[:, 0], e[:, 1], n)
        temp = e[:, 3] / n / (1.5 * units.kB)
        wall = time.perf_counter() - t0
        print(f"[{time.strftime('%H:%M:%S')}] {args.system}: step {len(e) - 1}/{n_steps}, {e[-1, 0] / 1000:.3f} ps, "
              f"{wall:.0f} s wall ({wall / max(len(e) - 1, 1) * 1000:.0f} ms/step), mean T {temp.mean():.0f} K; {d}",
              flush=True)
        if not np.all(np.isfinite(e)):
            raise FloatingPointError(f"{args.system}: non-finite energy at step {len(e) - 1}")
        return d

    dyn.attach(record, interval=1)  # also called at step 0 by the first run()
    print(f"{args.system} ({n} atoms, {model}, {args.dtype}): {n_steps} NVE steps of {dt:g} fs from {t_k:g} K",
          flush=True)
    t0 = last = time.perf_counter()
    while dyn.nsteps < n_steps:
        if args.budget is not None and time.perf_counter() - t0 > args.budget:
            print(f"cut short by the {args.budget:.0f} s budget at step {dyn.nsteps} of {n_steps}", flush=True)
            break
        dyn.run(min(10, n_steps - dyn.nsteps))
        if time.perf_counter() - last > args.checkpoint:
            save(False)
            last = time.perf_counter()
    d = save(True)
    print(f"{args.system}: {d}")
    print(f"CSV written to {csv}; figure written to {args.out / (args.name + '.png')}")


if __name__ == "__main__":
    main()
