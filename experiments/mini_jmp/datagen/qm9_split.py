"""Fixed random split of QM9 (the `qm9pack` wheel, 130,831 molecules) and access to its training molecules.

    python -m experiments.mini_jmp.datagen.qm9_split --out data/mini/qm9_split.json --seed 0

The split is over the molecules' GDB-9 ids (qm9pack column ``Index``, = the number in ``dsgdb9nsd_NNNNNN.xyz``):
ids sorted ascending, permuted with ``numpy.random.default_rng(seed)``; the first 80 % of the permutation are
``train``, the next 10 % ``val``, the rest ``test``. The json stores each split's ids sorted ascending.
The xTB pre-training sets (mini-ani1x, mini-t1x) only ever use ``train`` molecules.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np


def qm9pack_data_dir() -> Path:
    """The qm9pack data folder, found without importing qm9pack (its __init__ needs pkg_resources)."""
    import importlib.util

    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("qm9pack is not installed (pip install qm9pack)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@lru_cache(maxsize=2)
def load_qm9(columns: tuple = ("Index", "SMILES", "Elements", "XYZ_Ang")):
    import pandas as pd

    files = sorted(glob.glob(os.path.join(qm9pack_data_dir(), "qm9_part*.csv")))
    if not files:
        raise FileNotFoundError(f"no qm9_part*.csv in {qm9pack_data_dir()}")
    df = pd.concat([pd.read_csv(f, usecols=list(columns)) for f in files], ignore_index=True)
    return df.sort_values("Index").reset_index(drop=True)


def make_split(ids, seed: int = 0, fractions=(0.8, 0.1, 0.1)) -> dict:
    ids = np.sort(np.asarray(ids, dtype=np.int64))
    perm = np.random.default_rng(seed).permutation(len(ids))
    n_train = int(fractions[0] * len(ids))
    n_val = int(fractions[1] * len(ids))
    parts = {"train": perm[:n_train], "val": perm[n_train:n_train + n_val], "test": perm[n_train + n_val:]}
    return {k: sorted(int(i) for i in ids[v]) for k, v in parts.items()}


def write_split(out: Path, seed: int = 0) -> dict:
    ids = load_qm9(("Index",))["Index"].to_numpy()
    split = make_split(ids, seed)
    doc = {"source": "qm9pack (qm9_part1..3.csv)", "key": "Index (GDB-9 id, dsgdb9nsd_<id>.xyz)", "seed": seed,
           "fractions": [0.8, 0.1, 0.1], "n": int(len(ids)),
           "recipe": "ids sorted ascending; perm = numpy.random.default_rng(seed).permutation(n); "
                     "train = ids[perm[:int(0.8n)]], val = ids[perm[int(0.8n):int(0.8n)+int(0.1n)]], test = rest",
           **split}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as fh:
        json.dump(doc, fh, separators=(",", ":"))
        fh.write("\n")
    return doc


def train_ids(split_file: Path | None = None, seed: int = 0) -> list[int]:
    """QM9 training ids, from ``split_file`` when given and present (else recomputed, identical for the seed)."""
    if split_file is not None and Path(split_file).exists():
        return json.loads(Path(split_file).read_text())["train"]
    return make_split(load_qm9(("Index",))["Index"].to_numpy(), seed)["train"]


def qm9_atoms(row):
    """ase.Atoms of one qm9pack row (DFT-relaxed B3LYP geometry) with info smiles / molecule / qm9_index."""
    from ase import Atoms

    from .common import extxyz_safe

    symbols = json.loads(row["Elements"].replace("'", '"'))
    pos = np.array(json.loads(str(row["XYZ_Ang"]).replace("*^", "e")), dtype=float)
    atoms = Atoms(symbols, positions=pos)
    atoms.info.update(smiles=extxyz_safe(str(row["SMILES"])), molecule=f"qm9_{int(row['Index']):06d}",
                      qm9_index=int(row["Index"]))
    return atoms


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    doc = write_split(args.out, args.seed)
    print(f"QM9 split: {len(doc['train'])} train / {len(doc['val'])} val / {len(doc['test'])} test -> {args.out}")


if __name__ == "__main__":
    main()
