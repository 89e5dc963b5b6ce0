"""t-SNE of pre-trained GemNet-OC representations of structures from every mini-JMP dataset, coloured by dataset
(the mini version of the JMP paper's t-SNE figure).

    .venv/bin/python examples/representations_tsne.py [--model jmp-mini-s] [--per-dataset 150]

``jmp_calc.embed`` gives one vector per structure (mean over atoms of the backbone's final per-atom features). The
four pre-training domains and the downstream sets the pre-training never saw are embedded with the same model and
projected to 2-D with scikit-learn's t-SNE (``pip install scikit-learn``). Writes
``examples/out/representations_tsne.png`` and prints, as a number to go with the picture, the 10-nearest-neighbour
accuracy of the dataset label in the *original* embedding space (how well the representation separates domains;
chance = the largest dataset's share).
"""

from __future__ import annotations

import argparse
import gzip
import io
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "mini"
SETS = [  # (label, file, pre-training domain?)
    ("mini-oc20 (catalysis)", "mini_oc20/test.extxyz.gz", True),
    ("mini-ani1x (molecules)", "mini_ani1x/test.extxyz.gz", True),
    ("mini-t1x (reactions)", "mini_t1x/test.extxyz.gz", True),
    ("mini-rmd17", "mini_rmd17/test.extxyz.gz", False),
    ("mini-md22", "mini_md22/test.extxyz.gz", False),
    ("mini-matbench (bulk alloys)", "mini_matbench/test.extxyz.gz", False),
    ("QM9", "qm9", False),
]


def read_frames(rel: str, n: int, rng) -> list:
    from ase.io import read

    if rel == "qm9":
        from training.data.qm9 import read_qm9

        allq = read_qm9()
        pick = rng.choice(len(allq), size=n, replace=False)
        return [allq[int(i)].to_atoms() for i in pick]
    path = DATA / rel
    if not path.exists():
        return []
    with gzip.open(path, "rt") as fh:
        frames = read(io.StringIO(fh.read()), index=":", format="extxyz")
    pick = rng.choice(len(frames), size=min(n, len(frames)), replace=False)
    return [frames[int(i)] for i in pick]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="jmp-mini-s", help="registry name or model directory")
    ap.add_argument("--head", default=None, help="whose graph settings to use (default: the model's first head; "
                    "it must take periodicity from the structures, as mini-oc20's does)")
    ap.add_argument("--per-dataset", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "examples" / "out" / "representations_tsne.png")
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    from jmp_calc import embed

    rng = np.random.default_rng(args.seed)
    feats, labels, names, pre = [], [], [], []
    for label, rel, is_pre in SETS:
        frames = read_frames(rel, args.per_dataset, rng)
        if not frames:
            print(f"{label}: no data ({rel}), skipped")
            continue
        for a in frames:
            if not a.pbc.any():
                a.set_tags(np.full(len(a), 2))
        x = embed(frames, args.model, head=args.head)
        feats.append(x)
        labels += [len(names)] * len(x)
        names.append(label)
        pre.append(is_pre)
        print(f"{label}: {len(x)} structures embedded")
    X = np.concatenate(feats)
    y = np.asarray(labels)
    acc = cross_val_score(KNeighborsClassifier(10), X, y, cv=5).mean()
    chance = np.bincount(y).max() / len(y)
    print(f"10-NN accuracy of the dataset label in the {X.shape[1]}-d embedding (5-fold CV): {acc:.3f} "
          f"(chance {chance:.3f})")
    Z = TSNE(n_components=2, perplexity=30, init="pca", random_state=args.seed).fit_transform(X)
    fig, ax = plt.subplots(figsize=(7.5, 6))
    cmap = plt.get_cmap("tab10")
    for k, name in enumerate(names):
        m = y == k
        ax.scatter(Z[m, 0], Z[m, 1], s=10, color=cmap(k), marker="o" if pre[k] else "^",
                   label=name + ("" if pre[k] else " (not in pre-training)"), alpha=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE of {args.model} representations (10-NN dataset accuracy {acc:.2f})")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
