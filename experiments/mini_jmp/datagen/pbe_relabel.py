"""mini-rmd17-pbe (a downstream task at another level of theory): mini-rMD17 MD frames relabelled with DFT (PBE).

    python -m experiments.mini_jmp.datagen.pbe_relabel --out data/mini/mini_rmd17_pbe --molecule ethanol --seed 0

The geometries are frames of one molecule's GFN2-xTB Langevin MD in ``data/mini/mini_rmd17`` (500 K, see
mini_rmd17.py): a seeded random ``--n-train`` of its train frames, ``--n-val`` of its val frames and ``--n-test`` of
its test frames (the independent trajectory B), each relabelled with a single point of PBE/def2-SVP (rMD17's level of
theory) through pyscf: restricted Kohn-Sham, density fitting (def2-universal-jkfit), pyscf's default grid,
``conv_tol`` 1e-9 Ha, analytic gradients. The pre-training corpus is GFN2-xTB (molecules) and EMT (catalysis), so
fine-tuning on these labels tests transfer to a level of theory the backbone never saw. Energies eV, forces eV/A
(total DFT energies: the fine-tuning's per-element references absorb the offset). ``info`` keeps the molecule, the
frame's index in its source split file and its GFN2-xTB energy (``xtb_energy``) for comparison.

Cost: 28-52 s per ethanol frame on one core of the loaded 2-core machine (pyscf 2.14, 41 s on average over the
5-frame test of 2026-12-02); the default 300 + 50 + 100 frames take about 4-6 CPU-hours. Resumable in chunks of
``--chunk`` frames (``run_chunked``): restart the same command.
Writes ``OUT/{train,val,test}.extxyz.gz`` and ``OUT/meta.json`` (the manifest: parameters, method, source file
sha256, pyscf version, wall time, frame counts).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from ase import units
from ase.calculators.calculator import Calculator, all_changes

from .common import ROOT, SPLITS, command_line, read_extxyz_gz, run_chunked, sha256, single_point

DATASET = "mini-rmd17-pbe"
SOURCE = ROOT / "data" / "mini" / "mini_rmd17"


@dataclass(frozen=True)
class PBESettings:
    """The DFT single point (one place, so the manifest and the calculation cannot disagree)."""

    xc: str = "PBE"
    basis: str = "def2-SVP"
    auxbasis: str = "def2-universal-jkfit"
    conv_tol: float = 1e-9
    max_cycle: int = 100

    def describe(self) -> str:
        import pyscf

        return (f"{self.xc}/{self.basis} single points (pyscf {pyscf.__version__}: RKS, density fitting "
                f"{self.auxbasis}, default grid, conv_tol {self.conv_tol:g} Ha, analytic gradients) on GFN2-xTB "
                "Langevin MD frames of mini-rmd17 (500 K)")


class PBECalculator(Calculator):
    """ASE calculator of one PBE single point through pyscf (energy and forces of a neutral closed-shell molecule)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, settings: PBESettings = PBESettings(), **kwargs):
        super().__init__(**kwargs)
        self.settings = settings

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        from pyscf import dft, gto

        super().calculate(atoms, properties, system_changes)
        s = self.settings
        a = self.atoms
        mol = gto.M(atom=[(sym, tuple(p)) for sym, p in zip(a.get_chemical_symbols(), a.positions)],
                    basis=s.basis, unit="Angstrom", charge=0, spin=0, verbose=0)
        mf = dft.RKS(mol).density_fit(auxbasis=s.auxbasis)
        mf.xc = s.xc
        mf.conv_tol = s.conv_tol
        mf.max_cycle = s.max_cycle
        energy = mf.kernel()
        if not mf.converged:
            raise RuntimeError(f"PBE SCF did not converge in {s.max_cycle} cycles")
        grad = mf.nuc_grad_method().kernel()  # Hartree / Bohr
        self.results = {"energy": float(energy) * units.Hartree,
                        "forces": -np.asarray(grad, dtype=float) * units.Hartree / units.Bohr}


def select(frames, n: int, seed: int, split: str) -> list[int]:
    """Seeded, sorted choice of ``n`` frame indices (all of them when there are fewer)."""
    if n >= len(frames):
        return list(range(len(frames)))
    rng = np.random.default_rng([int(seed), SPLITS.index(split), 104729])
    return sorted(int(i) for i in rng.choice(len(frames), size=n, replace=False))


def generate(out: Path, molecule: str = "ethanol", seed: int = 0, n_train: int = 300, n_val: int = 50,
             n_test: int = 100, chunk: int = 10, source: Path = SOURCE, settings: PBESettings = PBESettings(),
             progress: bool = True):
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    units = []
    for split in SPLITS:
        frames = [a for a in read_extxyz_gz(Path(source) / f"{split}.extxyz.gz") if a.info.get("molecule") == molecule]
        if not frames:
            raise SystemExit(f"{source}/{split}.extxyz.gz: no frames of molecule {molecule!r}")
        for i in select(frames, sizes[split], seed, split):
            units.append({"id": len(units), "split": split, "source_index": i, "atoms": frames[i]})
    calc = PBECalculator(settings)

    def make(unit):
        a = unit["atoms"]
        keep = {k: a.info[k] for k in ("molecule", "smiles", "temperature_K", "traj", "md_time_fs") if k in a.info}
        frame = a.copy()
        frame.info = {}
        return [single_point(frame, calc, stress=False, source_split=unit["split"],
                             source_index=unit["source_index"], xtb_energy=float(a.get_potential_energy()),
                             level_of_theory=f"{settings.xc}/{settings.basis}", **keep)]

    params = {"molecule": molecule, "seed": seed, "n_train": n_train, "n_val": n_val, "n_test": n_test,
              "chunk": chunk, "settings": asdict(settings), "version": 1}
    extra = {"source": {f"{s}.extxyz.gz": sha256(Path(source) / f"{s}.extxyz.gz") for s in SPLITS},
             "source_dir": str(Path(source).resolve().relative_to(ROOT)) if Path(source).resolve().is_relative_to(ROOT)
             else str(source)}
    return run_chunked(out, dataset=DATASET, units=units, make_frames=make, chunk_size=chunk, params=params,
                       method=settings.describe(),
                       command=command_line("pbe_relabel", out, molecule=molecule, seed=seed, n_train=n_train,
                                            n_val=n_val, n_test=n_test, chunk=chunk),
                       desc=f"{DATASET} PBE single points", extra_meta=extra, progress=progress)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--molecule", default="ethanol", help="a molecule of data/mini/mini_rmd17 (info['molecule'])")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=300)
    ap.add_argument("--n-val", type=int, default=50)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--chunk", type=int, default=10, help="frames per resumable chunk")
    ap.add_argument("--source", type=Path, default=SOURCE, help="the mini-rmd17 split files")
    args = ap.parse_args(argv)
    generate(args.out, args.molecule, args.seed, args.n_train, args.n_val, args.n_test, args.chunk, args.source)


if __name__ == "__main__":
    main()
