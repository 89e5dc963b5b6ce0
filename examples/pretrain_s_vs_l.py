"""Pre-training curves of an S and an L run side by side (validation force MAE per head vs step).

    python examples/pretrain_s_vs_l.py --s runs/jmp-mini-s-v2 --l runs/jmp-mini-l-v2 \
        --out examples/results/pretrain_s_vs_l_v2.png          (v2; the defaults are the v1 runs)

Reads S/metrics.csv and L/metrics.csv (committed), plots every head both runs validate, and prints the table of
the last step both runs validated at.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def curves(path: Path) -> dict[str, tuple[list[int], list[float]]]:
    """head -> (steps, validation force MAE in meV/A) of every head the run validated."""
    rows = list(csv.DictReader(open(path)))
    heads = [k.split("/")[1] for k in (rows[0] if rows else {}) if k.startswith("val/") and k.endswith("/forces")]
    out = {}
    for h in heads:
        key = f"val/{h}/forces"
        pts = [(int(r["step"]), 1000 * float(r[key])) for r in rows if r.get(key)]
        out[h] = ([p[0] for p in pts], [p[1] for p in pts])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--s", type=Path, default=ROOT / "runs" / "jmp-mini-s", help="the S run's directory")
    ap.add_argument("--l", type=Path, default=ROOT / "runs" / "jmp-mini-l", help="the L run's directory")
    ap.add_argument("--out", type=Path, default=ROOT / "examples" / "results" / "pretrain_s_vs_l.png")
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {"s": curves(args.s / "metrics.csv"), "l": curves(args.l / "metrics.csv")}
    heads = [h for h in runs["s"] if h in runs["l"]]
    if not heads:
        raise SystemExit(f"{args.s} and {args.l} validate no head in common")
    fig, axes = plt.subplots(1, len(heads), figsize=(4.2 * len(heads), 3.4), squeeze=False)
    for ax, h in zip(axes[0], heads):
        for size, style in (("s", "-o"), ("l", "-s")):
            steps, mae = runs[size][h]
            ax.plot(steps, mae, style, ms=2, label=f"{size.upper()}: {getattr(args, size).name}")
        ax.set_yscale("log")
        ax.set_title(h, fontsize=10)
        ax.set_xlabel("pre-training step")
        ax.set_ylabel("val force MAE (meV/A)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    common = sorted(set(runs["s"][heads[0]][0]) & set(runs["l"][heads[0]][0]))
    step = common[-1]
    print(f"val force MAE (meV/A) at step {step}:")
    for h in heads:
        s = dict(zip(*runs["s"][h]))[step]
        l_ = dict(zip(*runs["l"][h]))[step]
        print(f"  {h:11s} S {s:7.1f}  L {l_:7.1f}  L vs S {100 * (1 - l_ / s):+.0f} %")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
