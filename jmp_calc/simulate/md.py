"""Molecular dynamics of many replicas in lock-step, one batched model call per time step.

Integrators: velocity Verlet (NVE) and Langevin (NVT, BAOAB splitting). Both use forces at the new positions once
per step, so every replica is evaluated together. NPT (``pressure_bar=``, needs stress: a conservative model and
periodic cells) runs ASE's ``NPTBerendsen`` one replica after the other: its pressure coupling rescales the cell
between force evaluations, which does not fit the lock-step loop. Trajectories are written with
``ase.io.Trajectory``.
"""

from __future__ import annotations

import numpy as np
from ase import units

__all__ = ["run_md"]


def run_md(atoms_list, calc, *, steps: int, timestep_fs: float = 1.0, temperature_K: float | None = None,
           friction_per_fs: float = 0.01, seed: int = 0, trajectory: str | None = None, interval: int = 1,
           callback=None, progress: bool | None = None, pressure_bar: float | None = None,
           taut_fs: float = 100.0, taup_fs: float = 500.0, compressibility_per_bar: float = 1e-6) -> list[dict]:
    """Advance every structure of ``atoms_list`` (in place) by ``steps`` steps.

    ``temperature_K=None``: NVE velocity Verlet; otherwise Langevin at that temperature with ``friction_per_fs``.
    ``pressure_bar``: NPT at ``temperature_K`` and that pressure (ASE ``NPTBerendsen``, thermostat/barostat times
    ``taut_fs``/``taup_fs``; ``compressibility_per_bar`` only sets the barostat's coupling strength; the log then
    also has each replica's ``volume`` in A^3).
    Velocities come from the atoms (``MaxwellBoltzmannDistribution`` beforehand). ``trajectory``: a path pattern
    with ``{i}`` for the replica index (e.g. ``"md_{i}.traj"``), written every ``interval`` steps.
    Returns per replica the time series of potential, kinetic and total energy (eV).
    """
    from ase.io import Trajectory
    from tqdm import tqdm

    if pressure_bar is not None:
        return _run_npt(atoms_list, calc, steps=steps, timestep_fs=timestep_fs, temperature_K=temperature_K,
                        pressure_bar=pressure_bar, taut_fs=taut_fs, taup_fs=taup_fs,
                        compressibility_per_bar=compressibility_per_bar, trajectory=trajectory, interval=interval,
                        callback=callback)
    potential = calc.potential
    n = len(atoms_list)
    dt = timestep_fs * units.fs
    rng = np.random.default_rng(seed)
    c1 = np.exp(-friction_per_fs * timestep_fs)  # Langevin velocity damping per step
    masses = [a.get_masses()[:, None] for a in atoms_list]
    mom = [a.get_momenta() for a in atoms_list]
    trajs = [Trajectory(trajectory.format(i=i), "w") for i in range(n)] if trajectory else None
    log = [{"potential": [], "kinetic": [], "total": []} for _ in range(n)]

    def evaluate():
        res = potential.predict(atoms_list, properties=("energy", "forces"))
        return [r["forces"] for r in res], [r["energy"] for r in res]

    forces, energies = evaluate()

    def record(step):
        for i, a in enumerate(atoms_list):
            ke = float((mom[i] ** 2 / (2 * masses[i])).sum())
            log[i]["potential"].append(energies[i])
            log[i]["kinetic"].append(ke)
            log[i]["total"].append(energies[i] + ke)
            if trajs and step % interval == 0:
                from ase.calculators.singlepoint import SinglePointCalculator

                a.set_momenta(mom[i], apply_constraint=False)
                snap = a.copy()
                snap.calc = SinglePointCalculator(snap, energy=energies[i], forces=forces[i])
                trajs[i].write(snap)
        if callback is not None:
            callback(step, atoms_list)

    record(0)
    show = progress if progress is not None else steps >= 200
    for step in tqdm(range(1, steps + 1), desc="md", unit="step", disable=not show):
        for i, a in enumerate(atoms_list):
            mom[i] = mom[i] + 0.5 * dt * forces[i]  # B
            if temperature_K is None:
                a.positions = a.positions + dt * mom[i] / masses[i]
            else:  # A O A
                a.positions = a.positions + 0.5 * dt * mom[i] / masses[i]
                sigma = np.sqrt((1 - c1**2) * masses[i] * units.kB * temperature_K)
                mom[i] = c1 * mom[i] + sigma * rng.standard_normal(mom[i].shape)
                a.positions = a.positions + 0.5 * dt * mom[i] / masses[i]
        forces, energies = evaluate()
        for i in range(n):
            mom[i] = mom[i] + 0.5 * dt * forces[i]  # B
        record(step)
    for i, a in enumerate(atoms_list):
        a.set_momenta(mom[i], apply_constraint=False)
    if trajs:
        for t in trajs:
            t.close()
    return [{k: np.array(v) for k, v in d.items()} for d in log]


def _run_npt(atoms_list, calc, *, steps, timestep_fs, temperature_K, pressure_bar, taut_fs, taup_fs,
             compressibility_per_bar, trajectory, interval, callback) -> list[dict]:
    from ase.io import Trajectory
    from ase.md.nptberendsen import NPTBerendsen

    if temperature_K is None:
        raise ValueError("NPT needs a temperature: run_md(..., temperature_K=..., pressure_bar=...)")
    if "stress" not in calc.potential.implemented_properties:
        raise ValueError("NPT needs stress: use a conservative model (forces='conservative')")
    if not all(a.pbc.all() for a in atoms_list):
        raise ValueError("NPT needs structures periodic in all three directions")
    logs = []
    for i, atoms in enumerate(atoms_list):
        atoms.calc = calc
        dyn = NPTBerendsen(atoms, timestep=timestep_fs * units.fs, temperature_K=temperature_K,
                           pressure_au=pressure_bar * units.bar, taut=taut_fs * units.fs, taup=taup_fs * units.fs,
                           compressibility_au=compressibility_per_bar / units.bar)
        log = {"potential": [], "kinetic": [], "total": [], "volume": []}

        def record(atoms=atoms, log=log, dyn=dyn):
            e, k = atoms.get_potential_energy(), atoms.get_kinetic_energy()
            log["potential"].append(e)
            log["kinetic"].append(k)
            log["total"].append(e + k)
            log["volume"].append(atoms.get_volume())
            if callback is not None:
                callback(dyn.nsteps, [atoms])

        dyn.attach(record, interval=1)
        if trajectory:
            traj = Trajectory(trajectory.format(i=i), "w", atoms)
            dyn.attach(traj.write, interval=interval)
        dyn.run(steps)
        if trajectory:
            traj.close()
        logs.append({k: np.array(v) for k, v in log.items()})
    return logs
