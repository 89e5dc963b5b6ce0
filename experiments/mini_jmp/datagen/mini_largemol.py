"""mini-largemol (corpus v2): GFN2-xTB conformers of larger CHNO(F) molecules with 10-20 heavy atoms.

    python -m experiments.mini_jmp.datagen.mini_largemol --out runs/datagen_v2/mini_largemol --n 600 --seed 0

QM9 stops at 9 heavy atoms; drug-like molecules of 13-20 heavy atoms are what users fine-tune on. The SMILES come
from the molecule lists bundled with the rdkit wheel (``SOURCES``: the NCI sample ``Data/NCI/first_5K.smi`` and the
small ChEMBL / ZINC example sets of ``Contrib``; whichever exist in the installed rdkit), kept when the molecule
* parses, is one fragment, net charge 0 (nitro groups allowed), no radicals, elements within H C N O F;
* has 10-20 heavy atoms;
* is no downstream benchmark analogue: Morgan-fingerprint Tanimoto < 0.5 to every rMD17 / MD22 molecule
  (filters.BenchmarkFilter) and no QM9 test-split molecule (filters.qm9_test_smiles);
deduplicated by canonical SMILES, sorted, and ``--n`` of them drawn with a seeded permutation.

One unit = one molecule: ``--n-conf`` rdkit ETKDGv3 conformers (MMFF-optimised where MMFF has parameters), each
rattled once (Gaussian, sigma ~ U(0.01, 0.05) A), plus one Langevin MD snippet (GFN2-xTB forces, T ~ U(400, 900) K,
1 fs, friction 0.02 / fs) from the first conformer, ``--md-steps`` steps sampled every ``--md-stride``.
Frames with |F| > 20 eV/A and SCF failures are dropped. info: smiles, molecule (largemol_<n>), heavy_atoms,
sampling (rattle / md), conformer, temperature_K. Energies eV (total xTB energy), forces eV/A. Splits by molecule
90 / 5 / 5 %.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .common import assign_splits, command_line, extxyz_safe, langevin, run_chunked, single_point, unit_rng, xtb_calc

DATASET = "mini-largemol"
METHOD = "GFN2-xTB (tblite 0.8 via tblite.ase.TBLite); geometries rdkit ETKDGv3 + MMFF94"
#: SMILES lists shipped inside the rdkit wheel (relative to the rdkit package folder)
SOURCES = ("Data/NCI/first_5K.smi", "Contrib/fraggle/data/ChEMBL_11265_actives.smi", "Contrib/Fastcluster/cdk2.smi",
           "Contrib/FreeWilson/data/CHEMBL2321810.smi", "Contrib/mmpa/data/sample.smi")
ELEMENTS = frozenset({"H", "C", "N", "O", "F"})


def _rdkit_root() -> Path:
    import rdkit

    return Path(rdkit.__file__).resolve().parent


def rdkit_smiles_sources() -> list[Path]:
    """The ``SOURCES`` files present in the installed rdkit."""
    return [_rdkit_root() / s for s in SOURCES if (_rdkit_root() / s).is_file()]


def _first_smiles(line: str):
    """The molecule of a SMILES-list line (the SMILES column may be first or second)."""
    from rdkit import Chem

    for token in line.split()[:2]:
        mol = Chem.MolFromSmiles(token)
        if mol is not None and mol.GetNumAtoms():
            return mol
    return None


def acceptable(mol, min_heavy: int = 10, max_heavy: int = 20) -> str | None:
    """None when ``mol`` fits the corpus' chemistry (before the benchmark filter), else the reason it does not."""
    from rdkit import Chem

    if len(Chem.GetMolFrags(mol)) != 1:
        return "fragments"
    if not {a.GetSymbol() for a in mol.GetAtoms()} <= ELEMENTS:
        return "elements"
    if Chem.GetFormalCharge(mol) != 0:
        return "charge"
    if any(a.GetNumRadicalElectrons() for a in mol.GetAtoms()):
        return "radical"
    if not min_heavy <= mol.GetNumHeavyAtoms() <= max_heavy:
        return "size"
    return None


def candidate_smiles(min_heavy: int = 10, max_heavy: int = 20, split_file: Path | None = None,
                     sources: list[Path] | None = None, qm9_test: frozenset[str] | None = None
                     ) -> tuple[list[str], dict]:
    """Sorted canonical SMILES that pass every filter, and counts of what was rejected why.

    ``sources``: SMILES-list files (default: rdkit's, ``SOURCES``); ``qm9_test``: canonical SMILES to exclude
    (default: the QM9 test split, filters.qm9_test_smiles)."""
    from rdkit import Chem, RDLogger

    from .filters import BenchmarkFilter, qm9_test_smiles

    RDLogger.DisableLog("rdApp.*")
    bench = BenchmarkFilter()
    if qm9_test is None:
        qm9_test = qm9_test_smiles(str(split_file) if split_file else None)
    kept, counts = set(), {"lines": 0, "unparsable": 0}
    for path in sources if sources is not None else rdkit_smiles_sources():
        for line in Path(path).read_text().splitlines():
            if not line.strip():
                continue
            counts["lines"] += 1
            mol = _first_smiles(line)
            if mol is None:
                counts["unparsable"] += 1
                continue
            why = acceptable(mol, min_heavy, max_heavy)
            smi = Chem.MolToSmiles(mol)
            if why is None and bench.is_analogue(smi):
                why = "benchmark_analogue"
            if why is None and smi in qm9_test:
                why = "qm9_test"
            if why is None and smi in kept:
                why = "duplicate"
            if why is None:
                kept.add(smi)
            else:
                counts[why] = counts.get(why, 0) + 1
    counts["kept"] = len(kept)
    return sorted(kept), counts


def conformers(smiles: str, n_conf: int, seed: int):
    """Up to ``n_conf`` embedded conformers (ase.Atoms), MMFF-optimised where MMFF has parameters."""
    from ase import Atoms
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    cids = list(AllChem.EmbedMultipleConfs(mol, int(n_conf), params))
    if not cids:
        return []
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMoleculeConfs(mol, maxIters=500)
    syms = [a.GetSymbol() for a in mol.GetAtoms()]
    return [Atoms(syms, positions=mol.GetConformer(c).GetPositions()) for c in cids]


def molecule_frames(smiles: str, name: str, rng: np.random.Generator, n_conf: int, md_steps: int, md_stride: int,
                    fmax: float):
    from .filters import force_ok

    try:
        confs = conformers(smiles, n_conf, int(rng.integers(1 << 30)))
    except Exception:  # noqa: BLE001 - rdkit failure: no frames for this molecule
        return []
    calc = xtb_calc()
    info = {"smiles": extxyz_safe(smiles), "molecule": name, "heavy_atoms": sum(1 for s in confs[0].symbols if s != "H")
            } if confs else {}
    frames = []
    for k, conf in enumerate(confs):
        work = conf.copy()
        sigma = float(rng.uniform(0.01, 0.05))
        work.positions += rng.normal(0.0, sigma, work.positions.shape)
        try:
            frames.append(single_point(work, calc, stress=False, sampling="rattle", conformer=k,
                                       rattle_sigma=round(sigma, 4), **info))
        except Exception:  # noqa: BLE001 - SCF failure: drop the frame
            pass
    if confs and md_steps > 0:
        temp = float(rng.uniform(400.0, 900.0))
        work = confs[0].copy()
        work.calc = calc
        dyn = langevin(work, temp, 1.0, int(rng.integers(1 << 31)))
        try:
            for step in range(md_stride, md_steps + 1, md_stride):
                dyn.run(md_stride)
                frames.append(single_point(work, calc, stress=False, sampling="md", conformer=0,
                                           temperature_K=round(temp, 1), md_time_fs=float(step), **info))
        except Exception:  # noqa: BLE001 - SCF failure / blow-up: keep what we have
            pass
    return [f for f in frames if force_ok(f, fmax)]


def generate(out: Path, n: int = 600, seed: int = 0, n_conf: int = 4, md_steps: int = 8, md_stride: int = 4,
             min_heavy: int = 10, max_heavy: int = 20, split_file: Path | None = None, chunk_size: int = 20,
             stop_after_chunks=None, progress: bool = True, fmax: float | None = None, sources=None, qm9_test=None,
             offset: int = 0):
    """``sources`` / ``qm9_test``: see candidate_smiles (tests pass small ones). ``offset``: skip the first ``offset``
    molecules of the seeded draw (a later run with ``offset`` = an earlier run's ``n`` adds new molecules)."""
    from .filters import FMAX

    fmax = FMAX if fmax is None else float(fmax)
    pool, counts = candidate_smiles(min_heavy, max_heavy, split_file, sources, qm9_test)
    print(f"mini-largemol: {counts}", file=sys.stderr)
    if not pool:
        raise ValueError("no candidate molecules (are rdkit's bundled SMILES lists missing?)")
    order = np.random.default_rng([seed, 3]).permutation(len(pool))[offset:offset + n]
    splits = assign_splits(len(order), seed + 3 + offset)
    units = [{"id": i, "split": splits[i], "smiles": pool[j]} for i, j in enumerate(order)]

    def make(unit):
        uid = unit["id"] + offset
        return molecule_frames(unit["smiles"], f"largemol_{uid:05d}", unit_rng(seed, uid), n_conf, md_steps,
                               md_stride, fmax)

    params = {"n": len(units), "seed": seed, "n_conf": n_conf, "md_steps": md_steps, "md_stride": md_stride,
              "min_heavy": min_heavy, "max_heavy": max_heavy, "fmax": fmax, "pool": len(pool), "version": 1}
    extra = {"offset": offset} if offset else {}
    params.update(extra)
    used = ([f"rdkit/{s}" for s in SOURCES if (_rdkit_root() / s).is_file()] if sources is None
            else [str(p) for p in sources])
    return run_chunked(out, dataset=DATASET, units=units, make_frames=make, chunk_size=chunk_size, params=params,
                       method=METHOD, desc="mini-largemol xTB conformers", stop_after_chunks=stop_after_chunks,
                       command=command_line("mini_largemol", out, n=n, seed=seed, n_conf=n_conf, md_steps=md_steps,
                                            md_stride=md_stride, **extra),
                       extra_meta={"candidates": counts, "smiles_sources": used,
                                   "filters": "10-20 heavy atoms, H C N O F, neutral, one fragment; Morgan(r=2, "
                                              "2048) Tanimoto < 0.5 to rMD17/MD22; not a QM9 test molecule; "
                                              f"|F| <= {fmax} eV/A"},
                       progress=progress)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=600, help="number of molecules (at most the filtered pool)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-conf", type=int, default=4)
    ap.add_argument("--md-steps", type=int, default=8)
    ap.add_argument("--md-stride", type=int, default=4)
    ap.add_argument("--split-file", type=Path, default=None, help="qm9_split.json (default: recompute, seed 0)")
    ap.add_argument("--chunk-size", type=int, default=20)
    ap.add_argument("--offset", type=int, default=0, help="skip the first OFFSET molecules of the seeded draw")
    args = ap.parse_args(argv)
    return generate(args.out, args.n, args.seed, args.n_conf, args.md_steps, args.md_stride,
                    split_file=args.split_file, chunk_size=args.chunk_size, offset=args.offset)


if __name__ == "__main__":
    main()
