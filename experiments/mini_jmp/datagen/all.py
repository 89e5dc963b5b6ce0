"""Generate every mini-JMP dataset in order and write ``<out>/MANIFEST.json``.

    OMP_NUM_THREADS=1 nice -n 10 python -m experiments.mini_jmp.datagen.all --out data/mini

Order: QM9 split, mini-oc20 (EMT), mini-matbench (EMT), mini-t1x, mini-ani1x, mini-rmd17, mini-md22 (GFN2-xTB).
Each generator is resumable (finished chunks / datasets are skipped), so re-running after an interruption continues.
MANIFEST.json lists per file: frames, sha256, bytes, the generator command, reference method and the dataset's
generation wall time (sum over chunks, seconds, 1 thread at nice 10 on a shared 2-core machine).
mini-oc22 (GFN1-xTB oxide slabs) is not generated (see data/README.md).
The pre-training corpus v2 (cleaned + enlarged, data/mini_v2) is made by experiments.mini_jmp.datagen.corpus_v2.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

from . import mini_ani1x, mini_matbench, mini_md22, mini_oc20, mini_rmd17, mini_t1x, qm9_split
from .common import sha256, write_json

GENERATORS = {
    "mini_oc20": mini_oc20,
    "mini_matbench": mini_matbench,
    "mini_t1x": mini_t1x,
    "mini_ani1x": mini_ani1x,
    "mini_rmd17": mini_rmd17,
    "mini_md22": mini_md22,
}


def count_frames(path: Path) -> int:
    """Frames in an extxyz(.gz) file (counts header lines without parsing the atoms)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    n = 0
    with opener(path, "rt") as fh:
        while True:
            line = fh.readline()
            if not line:
                return n
            if not line.strip():
                continue
            natoms = int(line)
            fh.readline()
            for _ in range(natoms):
                fh.readline()
            n += 1


def build_manifest(out: Path, metas: dict, split_cmd: str, split_wall: float) -> dict:
    out = Path(out)
    files = []
    split_file = out / "qm9_split.json"
    if split_file.exists():
        files.append({"path": "qm9_split.json", "dataset": "qm9-split", "frames": None,
                      "sha256": sha256(split_file), "bytes": split_file.stat().st_size, "command": split_cmd,
                      "method": "fixed random split of qm9pack ids (numpy default_rng(0)), 80/10/10",
                      "wall_s": round(split_wall, 1)})
    for name, meta in metas.items():
        for f in meta["files"]:
            path = out / name / f["file"]
            files.append({"path": f"{name}/{f['file']}", "dataset": meta["dataset"], "split": f["split"],
                          "frames": f["frames"], "sha256": sha256(path), "bytes": path.stat().st_size,
                          "command": meta["command"], "method": meta["method"], "wall_s": meta["wall_s"]})
        extra = out / name / "folds.json"
        if extra.exists():
            files.append({"path": f"{name}/folds.json", "dataset": meta["dataset"], "frames": None,
                          "sha256": sha256(extra), "bytes": extra.stat().st_size, "command": meta["command"],
                          "method": "5 seeded folds over info['id']", "wall_s": 0.0})
    return {"description": "mini-JMP datasets generated on this machine (see data/README.md); sha256 of the "
                           "committed files; wall_s = generation time of the dataset (1 thread, nice 10, shared CPU)",
            "datasets": {name: {"dataset": m["dataset"], "frames": m["frames"], "wall_s": m["wall_s"],
                                "method": m["method"], "command": m["command"], "params": m["params"]}
                         for name, m in metas.items()},
            "files": files,
            "total_bytes": sum(f["bytes"] for f in files)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", default=None, choices=list(GENERATORS),
                    help="run only these generators (the manifest still covers every finished dataset)")
    args = ap.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    split_file = out / "qm9_split.json"
    split_cmd = f"python -m experiments.mini_jmp.datagen.qm9_split --out {split_file} --seed 0"
    t0 = time.perf_counter()
    if not split_file.exists():
        qm9_split.main(["--out", str(split_file), "--seed", "0"])
    split_wall = time.perf_counter() - t0
    metas = {}
    for name, mod in GENERATORS.items():
        if args.only is not None and name not in args.only:
            continue
        argv_g = ["--out", str(out / name), "--seed", str(args.seed)]
        if name in ("mini_ani1x", "mini_t1x"):
            argv_g += ["--split-file", str(split_file)]
        mod.main(argv_g)
    for name in GENERATORS:
        meta_path = out / name / "meta.json"
        if meta_path.exists():
            metas[name] = json.loads(meta_path.read_text())
    manifest = build_manifest(out, metas, split_cmd, split_wall)
    write_json(out / "MANIFEST.json", manifest)
    print(f"MANIFEST: {len(manifest['files'])} files, {manifest['total_bytes'] / 1e6:.1f} MB "
          f"-> {out / 'MANIFEST.json'}")


if __name__ == "__main__":
    main()
