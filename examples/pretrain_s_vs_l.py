"""Pre-training curves of jmp-mini-s and jmp-mini-l side by side (validation force MAE per head vs step).

    python examples/pretrain_s_vs_l.py [--runs runs] [--out examples/results/pretrain_s_vs_l.png]

Reads RUNS/jmp-mini-{s,l}/metrics.csv (committed); prints the table of the last step both runs validated at.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADS = ("mini-oc20", "mini-ani1x", "mini-t1x")


def curves(path: Path) -> dict[str, tuple[list[int], list[float]]]:
    rows = list(csv.DictReader(open(path)))
    out = {}
    for h in HEADS:
        key = f"val/{h}/forces"
        pts = [(int(r["step"]), 1000 * float(r[key])) for r in rows if r.get(key)]
        out[h] = ([p[0] for p in pts], [p[1] for p in pts])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, default=ROOT / "runs")
    ap.add_argument("--out", type=Path, default=ROOT / "examples" / "results" / "pretrain_s_vs_l.png")
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {size: curves(args.runs / f"jmp-mini-{size}" / "metrics.csv") for size in ("s", "l")}
    fig, axes = plt.subplots(1, len(HEADS), figsize=(4.2 * len(HEADS), 3.4))
    for ax, h in zip(axes, HEADS):
        for size, style in (("s", "-o"), ("l", "-s")):
            steps, mae = runs[size][h]
            ax.plot(steps, mae, style, ms=3, label=f"jmp-mini-{size}")
        ax.set_yscale("log")
        ax.set_title(h, fontsize=10)
        ax.set_xlabel("pre-training step")
        ax.set_ylabel("val force MAE (meV/A)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    common = sorted(set(runs["s"][HEADS[0]][0]) & set(runs["l"][HEADS[0]][0]))
    step = common[-1]
    print(f"val force MAE (meV/A) at step {step}:")
    for h in HEADS:
        s = dict(zip(*runs["s"][h]))[step]
        l_ = dict(zip(*runs["l"][h]))[step]
        print(f"  {h:11s} S {s:7.1f}  L {l_:7.1f}  L vs S {100 * (1 - l_ / s):+.0f} %")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
