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

import argparse
from dataclasses import dataclass
from pathlib import Path

from .common import command_line, extxyz_safe, langevin, run_chunked, single_point, unit_rng, xtb_calc


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
        t_fs = round((equil + (k + 1) * stride) * timestep_fs, 2)
        frames.append(single_point(work, calc, stress=False, md_time_fs=t_fs, **info))
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



def generate_md_dataset(out: Path, *, module: str, dataset: str, method: str, molecules: dict, only, seed: int,
                        n_train: int, n_val: int, n_test: int, stride: int, equil: int, timestep_fs: float,
                        temperature_K: float, prerelax_steps: int, stop_after_chunks=None, progress: bool = True):
    """One chunk per molecule of ``molecules`` (``only``: a subset) through :func:`run_chunked` (resumable)."""
    units = md_units(molecules, only)

    def make(unit):
        return molecule_md_frames(unit["name"], unit["smiles"], unit["id"], seed, temperature_K=temperature_K,
                                  timestep_fs=timestep_fs, equil=equil, stride=stride, n_trainval=n_train + n_val,
                                  n_val=n_val, n_test=n_test, prerelax_steps=prerelax_steps)

    names = [u["name"] for u in units]
    params = {"seed": seed, "n_train": n_train, "n_val": n_val, "n_test": n_test, "stride": stride, "equil": equil,
              "timestep_fs": timestep_fs, "temperature_K": temperature_K, "molecules": names,
              "prerelax_steps": prerelax_steps, "version": 1}
    return run_chunked(out, dataset=dataset, units=units, make_frames=make, chunk_size=1, params=params, method=method,
                       command=command_line(module, out, seed=seed, n_train=n_train, n_val=n_val, n_test=n_test,
                                            stride=stride, equil=equil, molecules=" ".join(names)),
                       desc=f"{dataset} xTB MD (molecules)", stop_after_chunks=stop_after_chunks, progress=progress)


def md_main(argv, *, doc: str, generate, molecules: dict, default_molecules, n_train: int, n_test: int,
            equil: int, timestep_fs: float):
    """The command line of an MD dataset generator (``generate`` = its module's ``generate``)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=n_train)
    ap.add_argument("--n-val", type=int, default=50)
    ap.add_argument("--n-test", type=int, default=n_test)
    ap.add_argument("--stride", type=int, default=5, help=f"MD steps ({timestep_fs:g} fs) between saved frames")
    ap.add_argument("--equil", type=int, default=equil, help="discarded equilibration steps per trajectory")
    ap.add_argument("--molecules", nargs="*", default=list(default_molecules), choices=list(molecules))
    args = ap.parse_args(argv)
    return generate(args.out, args.seed, args.n_train, args.n_val, args.n_test, args.stride, args.equil,
                    molecules=args.molecules)


@dataclass(frozen=True)
class MDDataset:
    """One molecular-MD generator (mini_rmd17, mini_md22): its names, molecules and defaults, declared once, and its
    ``generate`` / ``main``. ``n_train`` is :meth:`generate`'s default and ``cli_n_train`` the command line's (the
    committed data's); the command line's other defaults are :meth:`generate`'s (``n_val`` 50 and ``stride`` 5 are
    ``md_main``'s). ``doc``: the generator module's docstring (its ``--help``)."""

    module: str
    dataset: str
    method: str
    molecules: dict[str, str]
    default_molecules: tuple[str, ...]
    n_train: int
    n_test: int
    equil: int
    timestep_fs: float
    cli_n_train: int
    doc: str = ""
    n_val: int = 50
    stride: int = 5
    temperature_K: float = 500.0
    prerelax_steps: int = 300

    def generate(self, out: Path, seed: int = 0, n_train: int | None = None, n_val: int | None = None,
                 n_test: int | None = None, stride: int | None = None, equil: int | None = None,
                 timestep_fs: float | None = None, temperature_K: float | None = None, molecules=None,
                 prerelax_steps: int | None = None, stop_after_chunks: int | None = None,
                 progress: bool = True) -> dict | None:
        """The dataset under ``out`` (resumable; see ``molecular_md.generate_md_dataset``); None: this dataset's
        default. ``molecules``: a subset of :attr:`molecules` (None: all of them). Returns the meta dict."""
        def pick(value, default):
            return default if value is None else value

        return generate_md_dataset(out, module=self.module, dataset=self.dataset, method=self.method,
                          molecules=self.molecules, only=molecules, seed=seed, n_train=pick(n_train, self.n_train),
                          n_val=pick(n_val, self.n_val), n_test=pick(n_test, self.n_test),
                          stride=pick(stride, self.stride), equil=pick(equil, self.equil),
                          timestep_fs=pick(timestep_fs, self.timestep_fs),
                          temperature_K=pick(temperature_K, self.temperature_K),
                          prerelax_steps=pick(prerelax_steps, self.prerelax_steps),
                          stop_after_chunks=stop_after_chunks, progress=progress)

    def main(self, argv=None):
        """The command line (``python -m experiments.mini_jmp.datagen.<module>``)."""
        return md_main(argv, doc=self.doc, generate=self.generate, molecules=self.molecules,
                        default_molecules=self.default_molecules, n_train=self.cli_n_train, n_test=self.n_test,
                        equil=self.equil, timestep_fs=self.timestep_fs)
