"""Shared GFN2-xTB Langevin MD sampler of named molecules (used by mini_rmd17 and mini_md22).

Per molecule (one unit, so a restart redoes at most one molecule):
1. geometry from SMILES with rdkit ETKDG (seeded) + MMFF, then xTB pre-relaxation (BFGS, fmax 0.05 eV/A);
2. trajectory A: Maxwell-Boltzmann start at T, ``equil`` steps discarded, then ``n_trainval`` frames every ``stride``
   steps; a seeded random ``n_val`` of them are ``val``, the rest ``train`` (as rMD17's 950 / 50 draws);
3. trajectory B: an independent start (new velocities) from the same relaxed geometry, same equilibration, ``n_test``
   frames -> ``test``. Test frames therefore come from a trajectory the model never saw, not interleaved with training
   frames.
"""

from __future__ import annotations

from .common import extxyz_safe, langevin, single_point, unit_rng, xtb_calc


def embed(smiles: str, seed: int):
    from ase import Atoms
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    if AllChem.EmbedMolecule(mol, params) != 0:
        raise RuntimeError(f"rdkit could not embed {smiles}")
    AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
    return Atoms([a.GetSymbol() for a in mol.GetAtoms()], positions=mol.GetConformer().GetPositions())


def prerelax(atoms, calc, fmax=0.05, steps=300):
    from ase.optimize import BFGS

    atoms = atoms.copy()
    atoms.calc = calc
    BFGS(atoms, logfile=None).run(fmax=fmax, steps=steps)
    atoms.calc = None
    return atoms


def sample_trajectory(start, calc, temperature_K, timestep_fs, equil, stride, n_frames, seed, info):
    work = start.copy()
    work.calc = calc
    dyn = langevin(work, temperature_K, timestep_fs, seed)
    dyn.run(equil)
    frames = []
    for k in range(n_frames):
        dyn.run(stride)
        frames.append(single_point(work, calc, stress=False, md_time_fs=round((equil + (k + 1) * stride) * timestep_fs, 2),
                                   **info))
    return frames


def molecule_md_frames(name: str, smiles: str, unit_id: int, seed: int, *, temperature_K: float, timestep_fs: float,
                       equil: int, stride: int, n_trainval: int, n_val: int, n_test: int, prerelax_steps: int = 300):
    rng = unit_rng(seed, unit_id)
    calc = xtb_calc()
    start = prerelax(embed(smiles, int(rng.integers(1 << 30))), calc, steps=prerelax_steps)
    info = {"molecule": name, "smiles": extxyz_safe(smiles), "temperature_K": temperature_K}
    frames = []
    if n_trainval:
        a = sample_trajectory(start, calc, temperature_K, timestep_fs, equil, stride, n_trainval,
                              int(rng.integers(1 << 31)), dict(info, traj="A"))
        val = set(rng.permutation(len(a))[:n_val].tolist())
        for k, f in enumerate(a):
            f.info["split"] = "val" if k in val else "train"
        frames += a
    if n_test:
        b = sample_trajectory(start, calc, temperature_K, timestep_fs, equil, stride, n_test,
                              int(rng.integers(1 << 31)), dict(info, traj="B"))
        for f in b:
            f.info["split"] = "test"
        frames += b
    return frames


def md_units(molecules: dict, only=None):
    names = [m for m in molecules if only is None or m in only]
    return [{"id": list(molecules).index(m), "split": "train", "name": m, "smiles": molecules[m]} for m in names]

