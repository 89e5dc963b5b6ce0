"""Parity plots of a mini-JMP task: the pre-trained and the from-scratch fine-tuned model side by side on its test set.

    python examples/parity_pre_vs_scratch.py [--task rmd17-ethanol] [--size s] [--variant e30]
        [--out examples/results/parity_rmd17-ethanol_e30.png]

Needs the two runs of ``python -m experiments.mini_jmp.driver finetune``
(runs/mini-finetune/TASK__SIZE__MODE[-VARIANT]__seed0).
Plots the task's reported target (forces for the force-field tasks, the property otherwise).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="rmd17-ethanol")
    ap.add_argument("--size", default="s")
    ap.add_argument("--variant", default="e30", help="'' for the task-budget runs")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from experiments.mini_jmp.driver import TASKS, run_dir, task_files
    from jmp_calc.io import load_model
    from jmp_calc.potential import Potential
    from training.data import read_dataset

    task = TASKS[args.task]
    samples = read_dataset(str(task_files(task)["test"]))
    atoms = [s.to_atoms() for s in samples]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.9), sharex=True, sharey=True)
    for ax, mode in zip(axes, ("pretrained", "scratch")):
        d = run_dir(args.task, args.size, mode, 0, args.variant)
        model = load_model(str(d / "model"))
        if task.metric == "forces":
            pot = Potential(model, head="energy", forces="auto")
            pred = np.concatenate([r["forces"].ravel() for r in pot.predict_many(atoms, batch_size=16)])
            true = np.concatenate([s.forces.ravel() for s in samples])
        else:
            pot = Potential(model, head=task.metric if task.metric in model.head_names else 0, forces="conservative")
            pred = np.array([r["energy"] for r in pot.predict_many(atoms, properties=("energy",), batch_size=16)])
            true = np.array([s.properties[task.metric] if task.metric in s.properties else s.energy for s in samples])
        mae = np.mean(np.abs(pred - true)) * task.scale
        ax.scatter(true, pred, s=2, alpha=0.4)
        lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_title(f"{mode}: test MAE {mae:.1f} {task.unit}", fontsize=10)
        ax.set_xlabel(f"reference {task.metric}")
        ax.set_ylabel(f"predicted {task.metric}")
    fig.suptitle(f"{args.task} ({args.size.upper()}{', ' + args.variant if args.variant else ''})", fontsize=11)
    fig.tight_layout()
    suffix = "_" + args.variant if args.variant else ""
    out = args.out or ROOT / "examples" / "results" / f"parity_{args.task}{suffix}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
