"""Mini-JMP experiment driver: fine-tune pre-trained vs from-scratch on every mini downstream task, and report.

    python -m training.pretrain configs/mini_s.yaml              # the pre-trained backbones (see configs/)
    python -m training.pretrain configs/mini_l.yaml
    python -m experiments.mini_jmp.driver prepare                # task files -> runs/mini-tasks/
    python -m experiments.mini_jmp.driver finetune --base runs/jmp-mini-s/model --size s [--tasks ...] [--jobs 2]
    python -m experiments.mini_jmp.driver finetune --base runs/jmp-mini-l/model --size l --tasks rmd17-aspirin qm9-gap
    python -m experiments.mini_jmp.driver report                 # examples/results/mini_jmp.md + PNGs

Run from the repository root (it reads data/mini and writes runs/ and examples/results/ there). Issue 12's
evaluation protocol (3 seeds, 50/200 training frames, equal step budgets, speed-up in steps, a PBE task, a MACE
baseline) is ``experiments/mini_jmp/protocol.py`` (README.md in this folder); it uses this module's task table and
``prepare``.

Every task is fine-tuned twice per model size, once from the pre-trained backbone and once ``--from-scratch`` (same
architecture, same epochs, same seed, same data; each with ``training.finetune``'s default learning rate for its
mode), and evaluated on the task's held-out test split. Runs are skipped when their ``test_metrics.json`` exists, so an
interrupted ``finetune`` continues where it stopped. The data are the mini-JMP sets of ``data/mini`` (see
data/README.md): downstream tasks the pre-training never saw (other molecules, other sampling, materials).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "mini"
TASK_DIR = ROOT / "runs" / "mini-tasks"
RUNS = ROOT / "runs" / "mini-finetune"
RESULTS = ROOT / "examples" / "results"


@dataclass(frozen=True)
class MiniTask:
    name: str
    family: str
    targets: str  #: --targets of training.finetune
    metric: str  #: the test metric reported (a key of test_metrics.json)
    unit: str  #: unit of the reported metric (after ``scale``)
    scale: float  #: factor from the stored unit (eV, eV/A, ...) to ``unit``
    paper_role: str  #: the JMP task this one plays the role of
    epochs: int = 10
    batch_size: int = 8
    max_train: int | None = None
    pooling: str | None = None
    forces: str = "direct"
    extra: tuple[str, ...] = field(default_factory=tuple)


RMD17_MOLECULES = ("aspirin", "ethanol", "malonaldehyde", "uracil")
TASKS: dict[str, MiniTask] = {}
for _m in RMD17_MOLECULES:
    TASKS[f"rmd17-{_m}"] = MiniTask(f"rmd17-{_m}", "mini-rmd17", "energy,forces", "forces", "meV/A", 1000.0,
                                    f"rMD17 {_m}", epochs=6, max_train=200)
TASKS["md22-Ac-Ala3-NHMe"] = MiniTask("md22-Ac-Ala3-NHMe", "mini-md22", "energy,forces", "forces", "meV/A", 1000.0,
                                      "MD22 Ac-Ala3-NHMe", epochs=6, max_train=150)
TASKS["qm9-U0"] = MiniTask("qm9-U0", "qm9", "energy", "energy", "meV", 1000.0, "QM9 U0", epochs=6, batch_size=16,
                           max_train=1000)
TASKS["qm9-gap"] = MiniTask("qm9-gap", "qm9", "gap", "gap", "meV", 1000.0, "QM9 HOMO-LUMO gap", epochs=6,
                            batch_size=16, max_train=1000, pooling="sum")
TASKS["matbench-mixing"] = MiniTask("matbench-mixing", "mini-matbench", "mixing_energy_per_atom",
                                    "mixing_energy_per_atom", "meV/atom", 1000.0, "MatBench mp_e_form", epochs=6,
                                    batch_size=16, pooling="mean")
#: the paper's test MAEs for the task each mini task plays the role of: (GN-OC-S scratch, JMP-S, GN-OC-L scratch,
#: JMP-L), read from Tables 2-5 of Shoghi et al. (ICLR 2024) as reproduced in github.com/facebookresearch/JMP
#: (README "Results", images/README/{qm9,rmd17,large_molecules,materials}.png @ 937b148). rMD17/MD22: force MAE
#: (meV/A); QM9: meV; MatBench mp_e_form: meV/atom (fold 0).
PAPER = {
    "rmd17-aspirin": (24.3, 6.7, 24.7, 5.1), "rmd17-ethanol": (13.0, 2.8, 13.3, 2.0),
    "rmd17-malonaldehyde": (21.1, 5.3, 25.7, 4.0), "rmd17-uracil": (12.0, 4.0, 12.9, 2.5),
    "md22-Ac-Ala3-NHMe": (5.07, 2.64, 6.27, 1.92), "qm9-U0": (7.2, 3.3, 9.4, 2.9), "qm9-gap": (38.5, 23.1, 40.6, 19.1),
    "matbench-mixing": (31.4, 13.6, 33.1, 10.3),
}
QM9_SIZES = {"train": 1500, "val": 200, "test": 1000}


def _write(frames, path: Path) -> None:
    from ase.io import write

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.extxyz")
    write(tmp, frames, format="extxyz")
    os.replace(tmp, path)


def _read_gz(path: Path):
    import gzip
    import io

    from ase.io import read

    with gzip.open(path, "rt") as fh:
        return read(io.StringIO(fh.read()), index=":", format="extxyz")


def prepare(out: Path = TASK_DIR) -> None:
    """Per-task train/val/test extxyz files from data/mini (rMD17/MD22 molecules split out, QM9 subsets)."""
    import numpy as np

    for family, names in (("mini_rmd17", RMD17_MOLECULES), ("mini_md22", ("Ac-Ala3-NHMe",))):
        if not (DATA / family / "test.extxyz.gz").exists():
            print(f"{family}: not generated yet (python -m experiments.mini_jmp.datagen.all --out data/mini), skipped")
            continue
        prefix = "rmd17" if family == "mini_rmd17" else "md22"
        if all((out / f"{prefix}-{n}" / "test.extxyz").exists() for n in names):
            continue
        for split in ("train", "val", "test"):
            frames = _read_gz(DATA / family / f"{split}.extxyz.gz")
            for n in names:
                sel = [a for a in frames if a.info.get("molecule") == n]
                if not sel:
                    raise SystemExit(f"{family}/{split}: no frames of molecule {n}")
                _write(sel, out / f"{prefix}-{n}" / f"{split}.extxyz")
        print(f"{family}: {', '.join(names)} -> {out}")
    qm9 = out / "qm9"
    if not (qm9 / "test.extxyz").exists():
        from training.data.qm9 import read_qm9

        split_ids = json.loads((DATA / "qm9_split.json").read_text())
        allq = read_qm9()
        index = {int(allq[k].source.split(":")[1]): k for k in range(len(allq))}  # QM9 id -> position
        rng = np.random.default_rng(0)
        for split, n in QM9_SIZES.items():
            ids = np.asarray(split_ids[split])
            pick = np.sort(rng.choice(ids, size=n, replace=False))
            frames = []
            for qid in pick:
                s = allq[index[int(qid)]]
                a = s.to_atoms()
                a.info["qm9_index"] = int(qid)
                frames.append(a)
            _write(frames, qm9 / f"{split}.extxyz")
        print(f"qm9: {QM9_SIZES} from the fixed split (data/mini/qm9_split.json) -> {qm9}")


def task_files(task: MiniTask) -> dict[str, Path]:
    if task.family == "mini-matbench":
        d = DATA / "mini_matbench"
        return {k: d / f"{k}.extxyz.gz" for k in ("train", "val", "test")}
    d = TASK_DIR / ("qm9" if task.family == "qm9" else task.name)
    return {k: d / f"{k}.extxyz" for k in ("train", "val", "test")}


def run_dir(task: str, size: str, mode: str, seed: int, variant: str = "") -> Path:
    return RUNS / f"{task}__{size}__{mode}{'-' + variant if variant else ''}__seed{seed}"


def finetune_command(task: MiniTask, base: str, size: str, mode: str, seed: int, threads: int,
                     variant: str = "", extra: tuple[str, ...] = (), epochs: int | None = None) -> list[str]:
    if epochs:
        task = dataclasses.replace(task, epochs=epochs)
    f = task_files(task)
    out = run_dir(task.name, size, mode, seed, variant)
    cmd = [sys.executable, "-m", "training.finetune", "--base", base, "--train", str(f["train"]),
           "--valid", str(f["val"]), "--test", str(f["test"]), "--out", str(out), "--targets", task.targets,
           "--forces", task.forces, "--epochs", str(task.epochs), "--warmup-epochs", "1",
           "--cosine-epochs", str(task.epochs), "--seed", str(seed), "--batch-size", str(task.batch_size),
           "--threads", str(threads), "--no-progress", "--name", f"jmp-mini-{size}-{task.name}"
           + ("-scratch" if mode == "scratch" else ""), "--level-of-theory", _theory(task)]
    if mode == "scratch":
        cmd.append("--from-scratch")
    if task.max_train:
        cmd += ["--max-train", str(task.max_train)]
    if task.pooling:
        cmd += ["--pooling", task.pooling]
    return cmd + list(task.extra) + list(extra)


def _theory(task: MiniTask) -> str:
    return {"qm9": "B3LYP/6-31G(2df,p) (QM9)", "mini-matbench": "ASE EMT"}.get(task.family, "GFN2-xTB")


def finetune(base: str, size: str, tasks: list[str], seeds: list[int], jobs: int, threads: int,
             modes=("pretrained", "scratch"), variant: str = "", extra: tuple[str, ...] = (),
             epochs: int | None = None, pair_with: str | None = None) -> None:
    todo = []
    for name in tasks:
        for seed in seeds:
            for mode in modes:
                out = run_dir(name, size, mode, seed, variant)
                if (out / "test_metrics.json").exists():
                    print(f"skip {out.name} (done)")
                    continue
                todo.append((TASKS[name], mode, seed, out))

    def one(item):
        task, mode, seed, out = item
        if (out / "test_metrics.json").exists():  # finished meanwhile by another driver
            return 0
        out.mkdir(parents=True, exist_ok=True)
        if pair_with is not None and mode == "pretrained":
            (out / "pair.txt").write_text(pair_with + "\n")  # the scratch variant report compares it with
        cmd = finetune_command(task, base, size, mode, seed, threads, variant, extra, epochs)
        if (out / "checkpoints").exists():
            cmd.append("--resume")
        t0 = time.time()
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        with open(out / "log.txt", "a") as log:
            rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        print(f"{out.name}: {'ok' if rc == 0 else f'FAILED rc={rc} (see {out}/log.txt)'} in {time.time() - t0:.0f} s",
              flush=True)
        return rc

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        rcs = list(pool.map(one, todo))
    if any(rcs):
        raise SystemExit(1)


def _curve(out: Path, metric: str):
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    key = next((k for k in rows[0] if k.startswith("val/") and k.endswith("/" + metric)), None)
    if key is None:
        return [], [], []
    ep, wall, val = [], [], []
    for r in rows:
        if r.get(key) not in (None, ""):
            ep.append(int(r["epoch"]) + 1)
            wall.append(float(r["wall_s"]))
            val.append(float(r[key]))
    return ep, wall, val


def _pair(name: str, size: str, pre_dir: Path, scr_dir: Path) -> dict | None:
    """Test MAEs, curves and the fine-tuning speed-up of one pre-trained run against one scratch run."""
    task = TASKS[name]
    res = {}
    for mode, out in (("pretrained", pre_dir), ("scratch", scr_dir)):
        if not (out / "test_metrics.json").exists():
            return None
        tm = json.loads((out / "test_metrics.json").read_text())
        ep, wall, val = _curve(out, task.metric)
        if not val:
            return None
        res[mode] = {"test": tm[task.metric]["mae"] * task.scale, "epochs": ep, "wall": wall, "val": val,
                     "energy": tm.get("energy", {}).get("mae") if task.metric == "forces" else None}
    pre, scr = res["pretrained"], res["scratch"]
    best_scratch = min(scr["val"])
    k_best = scr["val"].index(best_scratch)
    reach = next((i for i, v in enumerate(pre["val"]) if v <= best_scratch), None)
    return {
        "task": name, "size": size, "role": task.paper_role, "metric": task.metric, "unit": task.unit,
        "pretrained": pre["test"], "scratch": scr["test"],
        "improvement_pct": 100.0 * (1 - pre["test"] / scr["test"]),
        "pre_energy_meV": None if pre["energy"] is None else pre["energy"] * 1000,
        "scratch_energy_meV": None if scr["energy"] is None else scr["energy"] * 1000,
        "epochs_budget": max(scr["epochs"]),
        "scratch_best_epoch": int(scr["epochs"][k_best]),
        "pre_reach_epoch": None if reach is None else pre["epochs"][reach],
        "speedup_epochs": None if reach is None else scr["epochs"][k_best] / pre["epochs"][reach],
        "pre_reach_wall_s": None if reach is None else pre["wall"][reach],
        "scratch_best_wall_s": scr["wall"][k_best],
        "speedup_wall": None if reach is None else scr["wall"][k_best] / pre["wall"][reach],
        "curves": {"pretrained": [pre["epochs"], pre["val"]], "scratch": [scr["epochs"], scr["val"]]},
    }


def collect(sizes=("s", "l"), seeds=(0,)) -> list[dict]:
    """The main grid: every task and size with both a pre-trained and a scratch run of the task's budget."""
    rows = []
    for name in TASKS:
        for size in sizes:
            r = _pair(name, size, run_dir(name, size, "pretrained", seeds[0]), run_dir(name, size, "scratch", seeds[0]))
            if r:
                rows.append(r)
    return rows


def collect_variants() -> list[dict]:
    """Pre-trained runs with other settings (``--variant``), each against the scratch run of the same variant
    when there is one (e.g. a longer budget for both), else against the task's plain scratch run."""
    rows = []
    for d in sorted(RUNS.glob("*__pretrained-*__seed*")):
        name, size, mode, seed = d.name.split("__")
        if name not in TASKS:
            continue
        variant = mode.split("-", 1)[1]
        pair = (d / "pair.txt").read_text().strip() if (d / "pair.txt").exists() else variant
        scr = run_dir(name, size, "scratch", int(seed[4:]), pair)
        paired = (scr / "test_metrics.json").exists()
        r = _pair(name, size, d, scr if paired else run_dir(name, size, "scratch", int(seed[4:])))
        if r:
            r.update(variant=variant, scratch_variant=pair if paired else "(task budget)")
            rows.append(r)
    return rows


def _reach(r: dict) -> str:
    if r["pre_reach_epoch"] is None:
        return f"never (scratch best: epoch {r['scratch_best_epoch']})"
    return (f"epoch {r['pre_reach_epoch']} vs {r['scratch_best_epoch']}; {r['pre_reach_wall_s']:.0f} s vs "
            f"{r['scratch_best_wall_s']:.0f} s")


def _speed(r: dict) -> str:
    if r["speedup_epochs"] is None:
        return "-"
    return f"{r['speedup_epochs']:.1f}x ({r['speedup_wall']:.1f}x)"


def report(out: Path = RESULTS) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = collect()
    if not rows:
        raise SystemExit("no finished pairs of runs under runs/mini-finetune (run `finetune` first)")
    variants = collect_variants()
    out.mkdir(parents=True, exist_ok=True)
    (out / "mini_jmp_results.json").write_text(json.dumps({"grid": rows, "variants": variants}, indent=1) + "\n")
    lines = ["| task (plays the role of) | size | test MAE pre-trained | test MAE scratch | improvement | "
             "paper: scratch -> JMP (improvement) | pre-trained first reaches scratch's best val: epoch; wall | "
             "speed-up epochs (wall) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        paper = PAPER.get(r["task"])
        if paper:
            scr_p, pre_p = (paper[0], paper[1]) if r["size"] == "s" else (paper[2], paper[3])
            paper_s = f"{scr_p:g} -> {pre_p:g} ({100 * (1 - pre_p / scr_p):+.0f} %)"
        else:
            paper_s = "-"
        lines.append(f"| {r['task']} ({r['role']}) | {r['size'].upper()} | {r['pretrained']:.1f} {r['unit']} | "
                     f"{r['scratch']:.1f} {r['unit']} | {r['improvement_pct']:+.0f} % | {paper_s} | {_reach(r)} | "
                     f"{_speed(r)} |")
    for size in ("s", "l"):
        sel = [r for r in rows if r["size"] == size]
        if sel:
            paper_imps = [100 * (1 - PAPER[r["task"]][1 + 2 * (size == "l")] / PAPER[r["task"]][2 * (size == "l")])
                          for r in sel if r["task"] in PAPER]
            lines.append(f"\nMean improvement over {len(sel)} tasks ({size.upper()}): "
                         f"{np.mean([r['improvement_pct'] for r in sel]):+.1f} % (paper, the corresponding "
                         f"JMP-{size.upper()} tasks: {np.mean(paper_imps):+.1f} %)")
    both = [t for t in TASKS if {(t, "s"), (t, "l")} <= {(r["task"], r["size"]) for r in rows}]
    if both:
        by = {(r["task"], r["size"]): r for r in rows}
        lines += ["", "Scaling, S vs L (test MAE; same tasks, budgets and seed):", "",
                  "| task | S scratch | S pre-trained | L scratch | L pre-trained | L vs S, scratch | "
                  "L vs S, pre-trained | paper GN-OC-S / JMP-S / GN-OC-L / JMP-L |",
                  "|---|---|---|---|---|---|---|---|"]
        for t in both:
            s_, l_ = by[(t, "s")], by[(t, "l")]
            p = PAPER.get(t)
            lines.append(f"| {t} | {s_['scratch']:.1f} | {s_['pretrained']:.1f} | {l_['scratch']:.1f} | "
                         f"{l_['pretrained']:.1f} | {100 * (1 - l_['scratch'] / s_['scratch']):+.0f} % | "
                         f"{100 * (1 - l_['pretrained'] / s_['pretrained']):+.0f} % | "
                         + (" / ".join(f"{x:g}" for x in p) if p else "-") + f" ({s_['unit']}) |")
    if variants:
        lines += ["", "Variants (pre-trained runs with other settings; against the scratch run of the same variant "
                  "where one exists):", "",
                  "| task | size | variant | scratch run | test MAE pre-trained | test MAE scratch | improvement | "
                  "pre-trained first reaches scratch's best val: epoch; wall | speed-up epochs (wall) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in variants:
            lines.append(f"| {r['task']} | {r['size'].upper()} | {r['variant']} | {r['scratch_variant']} | "
                         f"{r['pretrained']:.1f} {r['unit']} | {r['scratch']:.1f} {r['unit']} | "
                         f"{r['improvement_pct']:+.0f} % | {_reach(r)} | {_speed(r)} |")
    (out / "mini_jmp_table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    panels = rows + [r for r in variants if r["scratch_variant"] != "(task budget)"]
    n = len(panels)
    cols = min(4, n)
    nrow = (n + cols - 1) // cols
    fig, axes = plt.subplots(nrow, cols, figsize=(4 * cols, 3.2 * nrow), squeeze=False)
    for ax, r in zip(axes.flat, panels):
        for mode, style in (("pretrained", "-o"), ("scratch", "--s")):
            ep, val = r["curves"][mode]
            ax.plot(ep, np.asarray(val) * TASKS[r["task"]].scale, style, ms=3, label=mode)
        ax.set_yscale("log")
        ax.set_title(f"{r['task']} ({r['size'].upper()}" + (f", {r['variant']})" if "variant" in r else ")"),
                     fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"val MAE {r['metric']} ({r['unit']})", fontsize=8)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "mini_jmp_learning_curves.png", dpi=100)
    plt.close(fig)
    print(f"wrote {out / 'mini_jmp_table.md'}, {out / 'mini_jmp_learning_curves.png'}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.mini_jmp.driver", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prepare")
    f = sub.add_parser("finetune")
    f.add_argument("--base", required=True, help="pre-trained model directory (OUT/model of training.pretrain)")
    f.add_argument("--size", required=True, help="label of the model size (s, l)")
    f.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    f.add_argument("--seeds", nargs="*", type=int, default=[0])
    f.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    f.add_argument("--threads", type=int, default=1, help="torch threads per run")
    f.add_argument("--variant", default="", help="label of a variant run (its directory gets -VARIANT); "
                   "with --extra, e.g. --variant lr1e-3 --extra=--lr=1e-3")
    f.add_argument("--extra", nargs="*", default=[], help="more training.finetune arguments for a variant")
    f.add_argument("--epochs", type=int, help="epochs (and cosine length) instead of the task's budget; with a "
                   "--variant label (e.g. --variant e30 --epochs 30: both modes get the longer budget)")
    f.add_argument("--pair-with", help="scratch variant a pre-trained variant is compared with (default: the same "
                   "label, else the task-budget scratch run), e.g. --variant e30-lr1e-3 --pair-with e30")
    f.add_argument("--modes", nargs="*", default=["pretrained", "scratch"], choices=["pretrained", "scratch"],
                   help="scratch runs only use BASE's architecture and graph settings, so they can run before the "
                        "pre-training has finished (any model directory of the same architecture gives the same run)")
    sub.add_parser("report")
    args = ap.parse_args(argv)
    if args.cmd == "prepare":
        prepare()
    elif args.cmd == "finetune":
        prepare()
        if args.epochs and not args.variant:
            raise SystemExit("--epochs needs a --variant label (runs of another budget go to their own directories)")
        finetune(args.base, args.size, args.tasks, args.seeds, args.jobs, args.threads, args.modes,
                 args.variant, tuple(args.extra), args.epochs, args.pair_with)
    else:
        report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
