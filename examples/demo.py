"""jmp_calc demo with the model shipped inside the package (offline): relaxation, MD, phonons.

The model is the default ``JMPCalculator()``, ``jmp-mini-general``: the mini-JMP pre-trained backbone fine-tuned on
EMT metals/surfaces and GFN2-xTB molecules; these metal structures use its ``surfaces`` (EMT) head.

1. relax an O adatom on Cu(111) (bottom layers fixed) with BFGS;
2. NVE molecular dynamics of bulk Cu (32 atoms, 300 K, 1 fs) and its energy conservation;
3. the phonon band structure of fcc Cu with phonopy (displacements evaluated in one batch), beside EMT's.

Every result the model gives is compared with EMT, the method that head's training data came from. Writes PNGs to
examples/out/ (or --out). Runs in about a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def relax(calc, out: Path):
    from ase.build import add_adsorbate, fcc111
    from ase.calculators.emt import EMT
    from ase.constraints import FixAtoms
    from ase.optimize import BFGS

    slab = fcc111("Cu", size=(3, 3, 4), vacuum=8.0)
    # a perfect slab has neighbour shells that the k-NN cap (18) cuts through: a tie, where the model's energy is
    # discontinuous (and jmp_calc warns); a real surface is never that perfect, so rattle it by 0.02 A
    slab.rattle(0.02, seed=0)
    add_adsorbate(slab, "O", 2.0, "fcc")
    slab.set_constraint(FixAtoms(mask=slab.positions[:, 2] < slab.positions[:, 2].min() + 2.5))
    tags = np.zeros(len(slab), int)
    tags[slab.positions[:, 2] > slab.positions[:-1, 2].max() - 0.5] = 1
    tags[-1] = 2
    slab.set_tags(tags)
    traj = []
    for name, c in (("jmp_calc", calc), ("EMT", EMT())):
        s = slab.copy()
        s.calc = c
        energies = []
        opt = BFGS(s, logfile=None)
        opt.attach(lambda s=s, e=energies: e.append(s.get_potential_energy()))
        opt.run(fmax=0.05, steps=200)
        height = s.positions[-1, 2] - s.positions[:-1, 2].max()
        traj.append((name, energies, height, s))
        print(f"  {name:8s}: {len(energies) - 1:3d} BFGS steps, E = {energies[-1]:9.4f} eV, "
              f"O height above the surface {height:.3f} A")
    # the model's relaxed structure, re-evaluated with EMT
    s_model = traj[0][3].copy()
    s_model.calc = EMT()
    print(f"  EMT energy at the model's minimum: {s_model.get_potential_energy():.4f} eV "
          f"(EMT's own minimum {traj[1][1][-1]:.4f} eV)")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, energies, _, _ in traj:
        ax.plot(np.array(energies) - energies[-1], "o-", ms=3, label=name)
    ax.set_xlabel("BFGS step")
    ax.set_ylabel("E - E(final) [eV]")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_title("O on Cu(111): relaxation")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "relax_O_Cu111.png", dpi=120)
    plt.close(fig)


def md(calc, out: Path, steps: int = 300):
    from ase import units
    from ase.build import bulk
    from ase.md.verlet import VelocityVerlet

    from jmp_calc.simulate import set_maxwell_boltzmann_momenta

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=1)
    atoms.calc = calc
    set_maxwell_boltzmann_momenta(atoms, 300, np.random.default_rng(0))  # and no drift
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    rows = []
    dyn.attach(lambda: rows.append((atoms.get_potential_energy(), atoms.get_kinetic_energy())), interval=1)
    t0 = time.perf_counter()
    dyn.run(steps)
    dt = time.perf_counter() - t0
    e = np.array(rows)
    total = e.sum(1)
    drift = (total[-1] - total[0]) / len(atoms)
    print(f"  {steps} steps of NVE in {dt:.1f} s ({dt / steps * 1000:.0f} ms/step); total-energy drift "
          f"{drift * 1000:+.3f} meV/atom, fluctuation (std) {total.std() / len(atoms) * 1000:.3f} meV/atom, "
          f"T = {e[:, 1].mean() / len(atoms) / (1.5 * units.kB):.0f} K")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    t = np.arange(len(e)) * 1.0
    ax.plot(t, (e[:, 0] - e[0, 0]) / len(atoms) * 1000, label="potential")
    ax.plot(t, (e[:, 1] - e[0, 1]) / len(atoms) * 1000, label="kinetic")
    ax.plot(t, (total - total[0]) / len(atoms) * 1000, "k", lw=2, label="total")
    ax.set_xlabel("time [fs]")
    ax.set_ylabel("energy change [meV/atom]")
    ax.set_title("NVE MD of bulk Cu (32 atoms, 300 K)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "md_energy_Cu.png", dpi=120)
    plt.close(fig)


def phonon_bands(calc, out: Path):
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from jmp_calc.simulate import phonons

    cu = bulk("Cu", "fcc", a=3.61)
    # Gamma - X - W - K - Gamma - L for the fcc primitive cell
    path = [[[0, 0, 0], [0.5, 0, 0.5], [0.5, 0.25, 0.75], [0.375, 0.375, 0.75], [0, 0, 0], [0.5, 0.5, 0.5]]]
    labels = ["$\\Gamma$", "X", "W", "K", "$\\Gamma$", "L"]
    import matplotlib.pyplot as plt
    from phonopy.phonon.band_structure import get_band_qpoints_and_path_connections

    qpoints, connections = get_band_qpoints_and_path_connections(path, npoints=41)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, c, style in (("jmp_calc", calc, "-"), ("EMT", EMT(), "--")):
        t0 = time.perf_counter()
        ph = phonons(cu, c, supercell=(4, 4, 4))
        ph.run_band_structure(qpoints, path_connections=connections, labels=labels)
        bands = ph.band_structure
        dist = np.concatenate(bands.distances)
        freq = np.concatenate(bands.frequencies)
        for k in range(freq.shape[1]):
            ax.plot(dist, freq[:, k], style, color="C0" if name == "jmp_calc" else "k", lw=1.5,
                    label=name if k == 0 else None)
        ph.run_mesh([12, 12, 12], is_gamma_center=True)  # Gamma-centred: keeps the point-group symmetry
        fmax = freq.max()
        print(f"  {name:8s}: {len(ph.supercells_with_displacements)} displaced 64-atom supercell(s), "
              f"{time.perf_counter() - t0:.1f} s; highest frequency {fmax:.2f} THz, "
              f"min {freq.min():.2f} THz")
    edges = np.unique(np.round(np.concatenate([[d[0], d[-1]] for d in bands.distances]), 6))
    for x in edges:
        ax.axvline(x, color="0.8", lw=0.8)
    ax.set_xticks(edges)
    ax.set_xticklabels(labels)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylabel("frequency [THz]")
    ax.set_title("fcc Cu phonons (4x4x4 supercell)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "phonons_Cu.png", dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    ap.add_argument("--md-steps", type=int, default=300)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    from jmp_calc import JMPCalculator

    calc = JMPCalculator()  # the model shipped inside the package; no network needed
    card = calc.model.card
    print(f"model: {card.name} ({card.task})")
    data, tests = card.training_data, card.test_metrics or {}
    for head in calc.model.head_names:  # one line per head: its data and its measured test errors
        m = tests.get(head, {})
        errs = ", ".join(f"{k} {m[k]['mae'] * 1000:.1f} {u}" for k, u in
                         (("energy_per_atom", "meV/atom"), ("forces", "meV/A"), ("stress", "meV/A^3")) if k in m)
        print(f"  head {head}: {data.get(head) if isinstance(data, dict) else data}")
        if errs:
            print(f"    test MAE: {errs}")
    print("1. relaxation of O on Cu(111)")
    relax(calc, args.out)
    print("2. NVE molecular dynamics of bulk Cu")
    md(JMPCalculator(dtype="float64"), args.out, steps=args.md_steps)
    print("3. phonons of fcc Cu")
    phonon_bands(JMPCalculator(dtype="float64"), args.out)
    print(f"figures written to {args.out}/")


if __name__ == "__main__":
    main()
