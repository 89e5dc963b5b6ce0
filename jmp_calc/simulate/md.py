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
           taut_fs: float = 100.0, taup_fs: float = 500.0, compressibility_per_bar: float = 1e-6,
           on_error: str = "raise") -> list[dict]:
    """Advance every structure of ``atoms_list`` (in place) by ``steps`` steps.

    ``temperature_K=None``: NVE velocity Verlet; otherwise Langevin at that temperature with ``friction_per_fs``.
    ``pressure_bar``: NPT at ``temperature_K`` and that pressure (ASE ``NPTBerendsen``, thermostat/barostat times
    ``taut_fs``/``taup_fs``; ``compressibility_per_bar`` only sets the barostat's coupling strength; the log then
    also has each replica's ``volume`` in A^3).
    Velocities come from the atoms (ASE's ``thermalize_momenta`` beforehand). ``trajectory``: a path pattern
    with ``{i}`` for the replica index (e.g. ``"md_{i}.traj"``), written every ``interval`` steps.
    Returns per replica the time series of potential, kinetic and total energy (eV).

    ``on_error="skip"``: a replica that is invalid or becomes invalid (fails the input checks, e.g. two atoms
    closer than the validation limit; the model gives NaN/inf) stops there and its slot is ``{"error": reason,
    "index": i, "step": k}``; the others go on. A replica invalid from the start is never in a batch, so the
    others' results are bit-identical to a run without it. ``"raise"`` (default): the first one raises.
    """
    from ase.io import Trajectory
    from tqdm import tqdm

    from .relax import _check_mode, evaluate_isolated

    skip = _check_mode(on_error)
    if pressure_bar is not None:
        return _run_npt(atoms_list, calc, steps=steps, timestep_fs=timestep_fs, temperature_K=temperature_K,
                        pressure_bar=pressure_bar, taut_fs=taut_fs, taup_fs=taup_fs,
                        compressibility_per_bar=compressibility_per_bar, trajectory=trajectory, interval=interval,
                        callback=callback, skip=skip)
    potential = calc.potential
    atoms_list = list(atoms_list)
    n = len(atoms_list)
    errors: dict[int, str] = {}
    failed_at: dict[int, int] = {}
    active = list(range(n))
    dt = timestep_fs * units.fs
    rng = np.random.default_rng(seed)
    c1 = np.exp(-friction_per_fs * timestep_fs)  # Langevin velocity damping per step
    masses = [a.get_masses()[:, None] for a in atoms_list]
    mom = [a.get_momenta() for a in atoms_list]
    trajs = [Trajectory(trajectory.format(i=i), "w") for i in range(n)] if trajectory else None
    log = [{"potential": [], "kinetic": [], "total": []} for _ in range(n)]

    forces, energies = [None] * n, [None] * n

    def evaluate(step):
        nonlocal active
        res = evaluate_isolated(potential, atoms_list, active, ("energy", "forces"), skip, errors)
        for i in active:
            if i in res:
                forces[i], energies[i] = res[i]["forces"], res[i]["energy"]
            else:
                failed_at[i] = step
                if trajs:
                    trajs[i].close()
        active = [i for i in active if i in res]

    evaluate(0)

    def record(step):
        for i in active:
            a = atoms_list[i]
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
        if not active:
            break
        for i in active:
            a = atoms_list[i]
            mom[i] = mom[i] + 0.5 * dt * forces[i]  # B
            if temperature_K is None:
                a.positions = a.positions + dt * mom[i] / masses[i]
            else:  # A O A
                a.positions = a.positions + 0.5 * dt * mom[i] / masses[i]
                sigma = np.sqrt((1 - c1**2) * masses[i] * units.kB * temperature_K)
                mom[i] = c1 * mom[i] + sigma * rng.standard_normal(mom[i].shape)
                a.positions = a.positions + 0.5 * dt * mom[i] / masses[i]
        evaluate(step)
        for i in active:
            mom[i] = mom[i] + 0.5 * dt * forces[i]  # B
        record(step)
    for i, a in enumerate(atoms_list):
        a.set_momenta(mom[i], apply_constraint=False)
    if trajs:
        for i in active:
            trajs[i].close()
    return [{"error": errors[i], "index": i, "step": failed_at[i]} if i in errors else
            {k: np.array(v) for k, v in d.items()} for i, d in enumerate(log)]


def _run_npt(atoms_list, calc, *, steps, timestep_fs, temperature_K, pressure_bar, taut_fs, taup_fs,
             compressibility_per_bar, trajectory, interval, callback, skip=False) -> list[dict]:
    if temperature_K is None:
        raise ValueError("NPT needs a temperature: run_md(..., temperature_K=..., pressure_bar=...)")
    if "stress" not in calc.potential.implemented_properties:
        raise ValueError("NPT needs stress: use a conservative model (forces='conservative')")
    if not all(a.pbc.all() for a in atoms_list):
        raise ValueError("NPT needs structures periodic in all three directions")
    from ..potential import STRUCTURE_ERRORS, InputError

    logs = []
    for i, atoms in enumerate(atoms_list):
        try:
            logs.append(_npt_one(i, atoms, calc, steps=steps, timestep_fs=timestep_fs, temperature_K=temperature_K,
                                 pressure_bar=pressure_bar, taut_fs=taut_fs, taup_fs=taup_fs,
                                 compressibility_per_bar=compressibility_per_bar, trajectory=trajectory,
                                 interval=interval, callback=callback))
        except STRUCTURE_ERRORS as exc:
            if not skip:
                raise
            logs.append({"error": str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}",
                         "index": i})
    return logs


def _npt_one(i, atoms, calc, *, steps, timestep_fs, temperature_K, pressure_bar, taut_fs, taup_fs,
             compressibility_per_bar, trajectory, interval, callback) -> dict:
    """One replica of :func:`_run_npt` (ASE's NPTBerendsen); raises :class:`InputError` for a structure that
    cannot be evaluated or whose energy becomes NaN/inf."""
    from ase.io import Trajectory
    from ase.md.nptberendsen import NPTBerendsen

    from ..potential import InputError

    atoms.calc = calc
    dyn = NPTBerendsen(atoms, timestep=timestep_fs * units.fs, temperature_K=temperature_K,
                       pressure_au=pressure_bar * units.bar, taut=taut_fs * units.fs, taup=taup_fs * units.fs,
                       compressibility_au=compressibility_per_bar / units.bar)
    log = {"potential": [], "kinetic": [], "total": [], "volume": []}

    def record():
        e, k = atoms.get_potential_energy(), atoms.get_kinetic_energy()
        if not (np.isfinite(e) and np.all(np.isfinite(atoms.get_forces()))):
            raise InputError(f"replica {i}: the model gave non-finite energy/forces at step {dyn.nsteps}")
        log["potential"].append(e)
        log["kinetic"].append(k)
        log["total"].append(e + k)
        log["volume"].append(atoms.get_volume())
        if callback is not None:
            callback(dyn.nsteps, [atoms])

    dyn.attach(record, interval=1)
    traj = Trajectory(trajectory.format(i=i), "w", atoms) if trajectory else None
    if traj is not None:
        dyn.attach(traj.write, interval=interval)
    try:
        dyn.run(steps)
    finally:
        if traj is not None:
            traj.close()
    return {k: np.array(v) for k, v in log.items()}
