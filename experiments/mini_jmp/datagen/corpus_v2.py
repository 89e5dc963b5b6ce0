"""Pre-training corpus v2 (issue 12): the v1 pre-training sets cleaned, plus new generations, one folder per head.

    nice -n 5 python -m experiments.mini_jmp.datagen.corpus_v2 --generate --parts runs/datagen_v2 --out data/mini_v2

(with OMP_NUM_THREADS=1: one core per job.)

``--generate`` first runs the new generators one after another (each resumable; finished ones are skipped), into
``--parts`` (not committed):
* ``mini_ani1x_v2``: 1,400 more QM9 training-split molecules (the 1,400 after the 900 v1 used in the same seeded draw,
  benchmark analogues skipped), GFN2-xTB: 2 rattled + 4 MD frames each (mini_ani1x --clean);
* ``mini_largemol``, ``mini_largemol_b``: 2 x 600 10-20-heavy-atom CHNO(F) molecules from rdkit's bundled SMILES
  lists (mini_largemol; the second batch the next 600 of the same seeded draw), 4 rattled conformers + 2 MD frames;
* ``mini_oc20_s1``: 150 more EMT adsorbate relaxations (mini_oc20 seed 1; seed 0 made v1).
Then every v2 dataset is assembled from its sources (data/mini v1 files and the parts), split by split, and filtered
(filters.py): frames with |F| > 20 eV/A dropped; molecules (info smiles) that are downstream benchmark analogues
(Tanimoto >= 0.5) dropped; QM9 molecules (info qm9_index) outside the QM9 training split dropped. Each frame gets
``info["source"]`` (the folder it came from). ``--out`` receives ``<dataset>/{train,val,test}.extxyz.gz`` and
``MANIFEST.json`` (per dataset: sources with their generator command and wall time, frames kept and dropped by
reason, max |F|; per file: frames, bytes, sha256). The v1 files (data/mini) are not changed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .common import ROOT, SPLITS, extxyz_safe, read_extxyz_gz, sha256, write_extxyz_gz, write_json
from .filters import FMAX, TANIMOTO_MAX, BenchmarkFilter, max_force


@dataclass(frozen=True)
class Part:
    """One generator run of corpus v2 (written under ``--parts``)."""

    name: str
    module: str
    args: tuple[str, ...]


PARTS = (
    Part("mini_ani1x_v2", "mini_ani1x", ("--n", "1400", "--seed", "0", "--n-rattle", "2", "--md-steps", "20",
                                         "--md-stride", "5", "--offset", "900", "--clean", "true", "--chunk-size",
                                         "25", "--split-file", "data/mini/qm9_split.json")),
    Part("mini_largemol", "mini_largemol", ("--n", "600", "--seed", "0", "--split-file", "data/mini/qm9_split.json")),
    Part("mini_largemol_b", "mini_largemol", ("--n", "600", "--seed", "0", "--offset", "600", "--split-file",
                                              "data/mini/qm9_split.json")),
    Part("mini_oc20_s1", "mini_oc20", ("--n", "150", "--seed", "1", "--max-steps", "50")),
)


@dataclass(frozen=True)
class Dataset:
    """One v2 dataset (= one pre-training head): its sources, ``v1:<folder>`` (data/mini) or ``part:<name>``."""

    name: str
    sources: tuple[str, ...]
    role: str


DATASETS = (
    Dataset("mini_oc20", ("v1:mini_oc20", "part:mini_oc20_s1"), "OC20 (catalysis): EMT adsorbate relaxations"),
    Dataset("mini_ani1x", ("v1:mini_ani1x", "part:mini_ani1x_v2"), "ANI-1x (molecules): GFN2-xTB conformers of QM9 "
                                                                   "training-split molecules"),
    Dataset("mini_t1x", ("v1:mini_t1x",), "Transition-1x (reactions): GFN2-xTB bond-stretch / H-shift / conformer "
                                          "paths"),
    Dataset("mini_largemol", ("part:mini_largemol", "part:mini_largemol_b"),
            "larger molecules: GFN2-xTB conformers of 10-20-heavy-atom CHNO(F) molecules"),
)


@dataclass
class CleanStats:
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {"force": 0, "benchmark_analogue": 0, "qm9_not_train": 0})
    max_force: float = 0.0

    def to_dict(self):
        return {"kept": self.kept, "dropped": dict(self.dropped), "max_force_eV_per_A": round(self.max_force, 3)}


def clean_frames(frames, bench: BenchmarkFilter | None, qm9_train: set[int] | None, fmax: float = FMAX,
                 stats: CleanStats | None = None):
    """The frames that pass the force, benchmark-analogue and QM9-train filters (``stats`` counts the rest)."""
    stats = stats if stats is not None else CleanStats()
    verdicts: dict[str, bool] = {}
    kept = []
    for f in frames:
        smiles = f.info.get("smiles")
        if bench is not None and smiles:
            if smiles not in verdicts:
                verdicts[smiles] = bench.is_analogue(smiles)
            if verdicts[smiles]:
                stats.dropped["benchmark_analogue"] += 1
                continue
        if qm9_train is not None and "qm9_index" in f.info and int(f.info["qm9_index"]) not in qm9_train:
            stats.dropped["qm9_not_train"] += 1
            continue
        fm = max_force(f)
        if not fm <= fmax or not np.isfinite(f.get_potential_energy()):
            stats.dropped["force"] += 1
            continue
        stats.max_force = max(stats.max_force, fm)
        stats.kept += 1
        kept.append(f)
    return kept, stats


def _source_dir(source: str, v1: Path, parts: Path) -> Path:
    kind, name = source.split(":", 1)
    return (v1 if kind == "v1" else parts) / name


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def assemble(out: Path, v1: Path, parts: Path, datasets=DATASETS, split_file: Path | None = None,
             fmax: float = FMAX, only=None) -> dict:
    """Write the v2 datasets and MANIFEST.json. ``only``: rebuild just these datasets and keep the other entries of
    an existing manifest as they are."""
    from .qm9_split import train_ids

    out, v1, parts = Path(out), Path(v1), Path(parts)
    previous = {}
    if only is not None and (out / "MANIFEST.json").exists():
        previous = json.loads((out / "MANIFEST.json").read_text())
    bench = BenchmarkFilter()
    qm9_train = set(train_ids(split_file))
    doc = {"description": "mini-JMP pre-training corpus v2 (data/README.md): v1 pre-training sets cleaned plus new "
                          "generations; one folder per pre-training head",
           "filters": {"max_force_eV_per_A": fmax,
                       "benchmark_tanimoto_max": TANIMOTO_MAX,
                       "fingerprint": "rdkit Morgan radius 2, 2048 bits (heavy-atom graph)",
                       "benchmarks": sorted(bench.references),
                       "qm9": "molecules with a qm9_index must be in the QM9 training split (data/mini/qm9_split.json)",
                       "scf": "frames whose xTB SCF failed were never written (generators drop them)"},
           "command": "python -m experiments.mini_jmp.datagen.corpus_v2 --generate --parts runs/datagen_v2 "
                      "--out data/mini_v2",
           "datasets": {}, "files": []}
    for ds in datasets:
        if only is not None and ds.name not in only:
            if ds.name in previous.get("datasets", {}):
                doc["datasets"][ds.name] = previous["datasets"][ds.name]
                doc["files"] += [f for f in previous["files"] if f["dataset"] == ds.name]
            continue
        t0 = time.perf_counter()
        sources, split_stats = [], {}
        for src in ds.sources:
            meta_path = _source_dir(src, v1, parts) / "meta.json"
            if not meta_path.exists():
                raise FileNotFoundError(f"{ds.name}: source {src} has no finished run ({meta_path} missing)")
            meta = json.loads(meta_path.read_text())
            sources.append({"source": src, "dataset": meta["dataset"], "command": meta["command"],
                            "method": meta["method"], "generation_wall_s": meta["wall_s"],
                            "frames_generated": meta["frames"], "units": meta.get("units")})
        total = CleanStats()
        for split in SPLITS:
            frames = []
            stats = CleanStats()
            for src in ds.sources:
                path = _source_dir(src, v1, parts) / f"{split}.extxyz.gz"
                if not path.exists():
                    continue
                kept, _ = clean_frames(read_extxyz_gz(path), bench, qm9_train, fmax, stats)
                for f in kept:
                    f.info["source"] = src
                    if "smiles" in f.info:  # the reader un-escaped stereo backslashes; escape again for the writer
                        f.info["smiles"] = extxyz_safe(str(f.info["smiles"]))
                frames += kept
            if not frames:
                continue
            path = out / ds.name / f"{split}.extxyz.gz"
            write_extxyz_gz(path, frames)
            split_stats[split] = stats.to_dict()
            total.kept += stats.kept
            total.max_force = max(total.max_force, stats.max_force)
            for k, v in stats.dropped.items():
                total.dropped[k] += v
            doc["files"].append({"path": f"{ds.name}/{split}.extxyz.gz", "dataset": ds.name, "split": split,
                                 "frames": len(frames), "bytes": path.stat().st_size, "sha256": sha256(path)})
        doc["datasets"][ds.name] = {"role": ds.role, "frames": total.kept, "dropped": total.dropped,
                                    "max_force_eV_per_A": round(total.max_force, 3), "splits": split_stats,
                                    "sources": sources,
                                    "generation_wall_s": round(sum(s["generation_wall_s"] for s in sources), 1),
                                    "assemble_wall_s": round(time.perf_counter() - t0, 1)}
        print(f"{ds.name}: {total.kept} frames kept, dropped {total.dropped}, max |F| {total.max_force:.1f} eV/A",
              file=sys.stderr)
    doc["total_bytes"] = sum(f["bytes"] for f in doc["files"])
    doc["total_frames"] = sum(f["frames"] for f in doc["files"])
    write_json(out / "MANIFEST.json", doc)
    return doc


def generate_parts(parts: Path, only=None) -> dict[str, float]:
    """Run the ``PARTS`` generators in order (each resumable; a finished one returns at once). Wall s per part."""
    import importlib

    walls = {}
    for part in PARTS:
        if only is not None and part.name not in only:
            continue
        mod = importlib.import_module(f".{part.module}", __package__)
        t0 = time.perf_counter()
        mod.main(["--out", str(Path(parts) / part.name), *part.args])
        walls[part.name] = round(time.perf_counter() - t0, 1)
    return walls


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "data" / "mini_v2")
    ap.add_argument("--v1", type=Path, default=ROOT / "data" / "mini", help="the v1 corpus (read only)")
    ap.add_argument("--parts", type=Path, default=ROOT / "runs" / "datagen_v2", help="where new generations go")
    ap.add_argument("--generate", action="store_true", help="run the new generators first (resumable)")
    ap.add_argument("--split-file", type=Path, default=ROOT / "data" / "mini" / "qm9_split.json")
    ap.add_argument("--only", nargs="*", default=None, choices=[d.name for d in DATASETS],
                    help="rebuild only these datasets (the manifest keeps the others' entries)")
    args = ap.parse_args(argv)
    if args.generate:
        generate_parts(args.parts)
    doc = assemble(args.out, args.v1, args.parts, split_file=args.split_file, only=args.only)
    print(f"corpus v2: {doc['total_frames']} frames, {doc['total_bytes'] / 1e6:.1f} MB -> {args.out / 'MANIFEST.json'}")


if __name__ == "__main__":
    main()
