"""Issue 12's evaluation protocol: pre-trained vs from scratch (and MACE) over tasks x training-set sizes x seeds.

    python -m experiments.mini_jmp.driver prepare                       # task files -> runs/mini-tasks/ (once)
    python -m experiments.mini_jmp.datagen.pbe_relabel --out data/mini/mini_rmd17_pbe   # the PBE task (once)
    python -m experiments.mini_jmp.protocol run --base runs/jmp-mini-s-v2/model --out runs/protocol/s-v2 --jobs 2
    python -m experiments.mini_jmp.protocol report --out runs/protocol/s-v2              # (run ends with it too)

Run from the repository root. For every task, training-set size N (``--sizes``, default 50 and 200 frames) and
seed (``--seeds``, default 0 1 2): a seeded subset of N frames of the task's training split (the same frames for
every mode of that seed), then

* ``pretrained``: ``python -m training.finetune --base BASE`` with the CLI defaults (conservative forces, lr 3e-3,
  warm-up + cosine over the run, early stopping, best-validation export; docs/finetune_recipe.md);
* ``scratch``: the same command with ``--from-scratch`` (same architecture, data, seed, epochs);
* ``mace`` (force-field tasks): ``experiments.mini_jmp.mace_baseline`` (mace_small.yaml) on the same frames, epochs.

Every mode gets the same epochs, ``round(--steps / ceil(N / 8))`` (batch 8, the CLI default), so the pre-trained and
scratch runs have equal optimiser-step budgets; early stopping may end either sooner. Each run is tested on the
task's full test split. The report (``OUT/protocol_results.json``, ``OUT/protocol_table.md``,
``OUT/learning_curves.png``, ``OUT/gain_vs_size.png``) gives test MAEs (energy per atom, forces; the property for
property tasks) as mean ± sd over seeds, the per-seed paired differences (pre-trained - scratch) and gains, and the
speed-up in steps (protocol_stats.speedup: scratch's best validation error against the first step the pre-trained
run's running best reaches it; "not reached" when it never does). A run whose ``test_metrics.json`` exists is
skipped; an interrupted one resumes from its checkpoints, so ``run`` can be restarted with the same arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .driver import ROOT, TASKS, task_files
from .protocol_stats import Curve, mean_sd, paired, read_curve, speedup

BATCH = 8  #: training.finetune's default batch size (passed to MACE too)
MODES = ("pretrained", "scratch", "mace")
PBE_DIR = ROOT / "data" / "mini" / "mini_rmd17_pbe"


@dataclass(frozen=True)
class ProtocolTask:
    name: str
    kind: str  #: "force-field" (energy + forces; MACE baseline too) or "property"
    targets: str  #: --targets of training.finetune
    metric: str  #: the validation / test metric that decides (a test_metrics.json key)
    unit: str
    scale: float  #: stored unit (eV, eV/A) -> ``unit``
    level_of_theory: str
    train: Path
    valid: Path
    test: Path
    pooling: str | None = None

    def available(self) -> bool:
        return all(p.exists() for p in (self.train, self.valid, self.test))


def _theory(family: str) -> str:
    return {"qm9": "B3LYP/6-31G(2df,p) (QM9)", "mini-matbench": "ASE EMT"}.get(family, "GFN2-xTB")


def protocol_tasks(pbe_dir: Path = PBE_DIR) -> dict[str, ProtocolTask]:
    """The driver's mini tasks plus the PBE-relabelled molecule (datagen.pbe_relabel)."""
    out = {}
    for name, t in TASKS.items():
        f = task_files(t)
        ff = t.targets == "energy,forces"
        out[name] = ProtocolTask(name, "force-field" if ff else "property", t.targets, t.metric,
                                 t.unit, t.scale, _theory(t.family), f["train"], f["val"], f["test"], t.pooling)
    d = Path(pbe_dir)
    out["pbe-ethanol"] = ProtocolTask("pbe-ethanol", "force-field", "energy,forces", "forces", "meV/A", 1000.0,
                                      "PBE/def2-SVP (pyscf)", d / "train.extxyz.gz", d / "val.extxyz.gz",
                                      d / "test.extxyz.gz")
    return out


@dataclass(frozen=True)
class Settings:
    base: str
    out: Path
    tasks: tuple[str, ...]
    sizes: tuple[int, ...] = (50, 200)
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 1000
    epochs: int | None = None  #: instead of --steps (tiny tests)
    max_val: int | None = None  #: subsample validation sets (tiny tests only; default: the task's full split)
    max_test: int | None = None
    modes: tuple[str, ...] = MODES  #: e.g. ("scratch", "mace"): the baselines, before the backbone exists
    threads: int = 1
    jobs: int = 1
    pbe_dir: Path = PBE_DIR


def epochs_for(n_train: int, steps: int) -> int:
    return max(1, round(steps / math.ceil(n_train / BATCH)))


def run_dir(out: Path, task: str, n: int, seed: int, mode: str) -> Path:
    return Path(out) / "runs" / task / f"n{n}" / f"seed{seed}" / mode


def _subset(src: Path, dst: Path, n: int | None, seed: int) -> Path:
    """``dst``: a seeded choice of ``n`` frames of ``src`` in their file order (``src`` itself when n is None)."""
    if n is None:
        return src
    if dst.exists():
        return dst
    from ase.io import read, write

    frames = read(src, index=":")
    if n > len(frames):
        raise SystemExit(f"{src}: {len(frames)} frames, fewer than the {n} asked for")
    rng = np.random.default_rng([int(seed), int(n), 2719])
    pick = rng.choice(len(frames), size=n, replace=False)
    pick = np.sort(_cover_elements(frames, pick, rng))
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.stem + ".tmp.extxyz")
    write(tmp, [frames[i] for i in pick], format="extxyz")
    os.replace(tmp, dst)
    return dst


def _cover_elements(frames, pick: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``pick`` with, for every element of ``frames`` that none of the picked frames has, its last free slot given
    to a seeded frame that has it: a small subset of QM9 or MatBench otherwise often lacks F (or a metal), so its
    fitted per-element reference energy is missing and every test structure with that element is off by hundreds of
    eV for pre-trained and scratch models alike. Subsets of one molecule's MD (every frame has every element) come
    out unchanged."""
    pick = list(pick)
    have = lambda idx: {int(z) for i in idx for z in frames[i].numbers}  # noqa: E731
    missing = sorted({int(z) for a in frames for z in a.numbers} - have(pick))
    slot = len(pick) - 1
    for z in missing:
        if z in have(pick):
            continue  # brought in by a frame added for an earlier element
        donors = [i for i, a in enumerate(frames) if z in a.numbers and i not in pick]
        while slot >= 0 and len(have(pick[:slot] + pick[slot + 1:])) < len(have(pick)):
            slot -= 1  # never give away the only frame of an element already covered
        if slot < 0:
            break
        pick[slot] = int(rng.choice(donors))
        slot -= 1
    return np.asarray(pick)


@dataclass(frozen=True)
class Job:
    task: ProtocolTask
    n: int
    seed: int
    mode: str
    out: Path
    train: Path
    valid: Path
    test: Path
    epochs: int

    def command(self, s: Settings) -> list[str]:
        if self.mode == "mace":
            return [sys.executable, "-m", "experiments.mini_jmp.mace_baseline", "--train", str(self.train),
                    "--valid", str(self.valid), "--test", str(self.test), "--out", str(self.out),
                    "--epochs", str(self.epochs), "--seed", str(self.seed), "--threads", str(s.threads)]
        cmd = [sys.executable, "-m", "training.finetune", "--base", s.base, "--train", str(self.train),
               "--valid", str(self.valid), "--test", str(self.test), "--out", str(self.out),
               "--targets", self.task.targets, "--epochs", str(self.epochs), "--seed", str(self.seed),
               "--threads", str(s.threads), "--no-progress", "--level-of-theory", self.task.level_of_theory,
               "--name", f"{self.task.name}-n{self.n}-seed{self.seed}-{self.mode}"]
        if self.task.pooling:
            cmd += ["--pooling", self.task.pooling]
        if self.mode == "scratch":
            cmd.append("--from-scratch")
        if (self.out / "checkpoints").is_dir():
            cmd.append("--resume")
        return cmd


def plan(s: Settings) -> list[Job]:
    tasks = protocol_tasks(s.pbe_dir)
    jobs = []
    for name in s.tasks:
        t = tasks[name]
        if not t.available():
            print(f"{name}: task files missing ({t.train.parent}); make them first (module docstring), skipped")
            continue
        data = Path(s.out) / "data" / name
        valid = _subset(t.valid, data / f"val_{s.max_val}.extxyz", s.max_val, 0)
        test = _subset(t.test, data / f"test_{s.max_test}.extxyz", s.max_test, 0)
        for n in s.sizes:
            epochs = s.epochs or epochs_for(n, s.steps)
            for seed in s.seeds:
                train = _subset(t.train, data / f"train_n{n}_seed{seed}.extxyz", n, seed)
                for mode in MODES:
                    if mode not in s.modes or mode == "mace" and t.kind != "force-field":
                        continue
                    jobs.append(Job(t, n, seed, mode, run_dir(s.out, name, n, seed, mode), train, valid, test,
                                    epochs))
    return jobs


def execute(s: Settings, jobs: list[Job]) -> int:
    todo = [j for j in jobs if not (j.out / "test_metrics.json").exists()]
    print(f"{len(jobs)} runs, {len(jobs) - len(todo)} done, {len(todo)} to run ({s.jobs} at a time)", flush=True)

    def one(j: Job) -> int:
        j.out.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        env = {**os.environ, "OMP_NUM_THREADS": str(s.threads)}
        with open(j.out / "log.txt", "a") as log:
            rc = subprocess.call(j.command(s), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        print(f"{j.task.name} n{j.n} seed{j.seed} {j.mode}: "
              f"{'ok' if rc == 0 else f'FAILED rc={rc} (see {j.out}/log.txt)'} in {time.time() - t0:.0f} s",
              flush=True)
        return rc

    with ThreadPoolExecutor(max_workers=s.jobs) as pool:
        rcs = list(pool.map(one, todo))
    return int(any(rcs))


# ---------------------------------------------------------------- report


def _mace_curve(out: Path, metric: str) -> Curve | None:
    import csv

    path = out / "val_curve.csv"
    key = {"forces": "val_forces", "energy_per_atom": "val_energy_per_atom"}.get(metric)
    if key is None or not path.exists():
        return None
    rows = [r for r in csv.DictReader(open(path)) if r.get(key) not in (None, "")]
    return Curve(tuple(int(r["step"]) for r in rows), tuple(float(r[key]) for r in rows)) if rows else None


def _metrics(t: ProtocolTask) -> list[str]:
    return ["forces", "energy_per_atom"] if t.kind == "force-field" else [t.metric]


def _unit(t: ProtocolTask, metric: str) -> tuple[str, float]:
    return {"forces": ("meV/A", 1000.0), "energy_per_atom": ("meV/atom", 1000.0)}.get(metric, (t.unit, t.scale))


def collect_runs(s: Settings) -> list[dict]:
    """One record per finished run: test MAEs (reporting units), the validation curve, steps and wall time."""
    tasks = protocol_tasks(s.pbe_dir)
    rows = []
    for name in s.tasks:
        t = tasks[name]
        for n in s.sizes:
            for seed in s.seeds:
                for mode in MODES:
                    d = run_dir(s.out, name, n, seed, mode)
                    if not (d / "test_metrics.json").exists():
                        continue
                    tm = json.loads((d / "test_metrics.json").read_text())
                    test = {m: tm[m]["mae"] * _unit(t, m)[1] for m in _metrics(t) if m in tm}
                    if mode == "mace":
                        curve = _mace_curve(d, t.metric)
                        wall = tm.get("run", {}).get("wall_s")
                        best = None
                    else:
                        curve = read_curve(d / "metrics.csv", t.metric)
                        wall = _last_wall(d / "metrics.csv")
                        best = tm.get("weights", {}).get("step")
                    rows.append({"task": name, "kind": t.kind, "n_train": n, "seed": seed, "mode": mode,
                                 "test": test, "best_step": best, "wall_s": wall,
                                 "steps_run": None if curve is None else curve.steps[-1],
                                 "curve": None if curve is None else {"steps": list(curve.steps),
                                                                     "values": list(curve.values)}})
    return rows


def _last_wall(path: Path) -> float | None:
    import csv

    rows = list(csv.DictReader(open(path)))
    return float(rows[-1]["wall_s"]) if rows and rows[-1].get("wall_s") else None


def summarise(s: Settings, runs: list[dict]) -> list[dict]:
    """Per task and size: mean ± sd per mode, paired pre-trained vs scratch (and vs MACE), speed-ups per seed."""
    tasks = protocol_tasks(s.pbe_dir)
    by = {(r["task"], r["n_train"], r["seed"], r["mode"]): r for r in runs}
    out = []
    for name in s.tasks:
        t = tasks[name]
        for n in s.sizes:
            seeds = [k for k in s.seeds if (name, n, k, "pretrained") in by and (name, n, k, "scratch") in by]
            if not seeds:
                continue
            rec = {"task": name, "kind": t.kind, "n_train": n, "seeds": seeds, "metric": t.metric,
                   "epochs": s.epochs or epochs_for(n, s.steps),
                   "steps_budget": (s.epochs or epochs_for(n, s.steps)) * math.ceil(n / BATCH), "test": {}}
            for m in _metrics(t):
                unit = _unit(t, m)[0]
                pre = [by[(name, n, k, "pretrained")]["test"][m] for k in seeds]
                scr = [by[(name, n, k, "scratch")]["test"][m] for k in seeds]
                entry = {"unit": unit, "vs_scratch": asdict(paired(pre, scr))}
                mseeds = [k for k in seeds if (name, n, k, "mace") in by]
                if mseeds:
                    mace = [by[(name, n, k, "mace")]["test"][m] for k in mseeds]
                    entry["mace"] = asdict(mean_sd(mace))
                    entry["vs_mace"] = asdict(paired([by[(name, n, k, "pretrained")]["test"][m] for k in mseeds],
                                                     mace))
                rec["test"][m] = entry
            sp = []
            for k in seeds:
                c = {mode: by[(name, n, k, mode)]["curve"] for mode in ("pretrained", "scratch")}
                v = speedup(Curve(tuple(c["pretrained"]["steps"]), tuple(c["pretrained"]["values"])),
                            Curve(tuple(c["scratch"]["steps"]), tuple(c["scratch"]["values"])))
                sp.append({"seed": k, **asdict(v), "factor": v.factor})
            rec["speedup"] = sp
            out.append(rec)
    return out


def _ms(d: dict) -> str:
    return f"{d['mean']:.1f}" + ("" if d["sd"] is None else f" ± {d['sd']:.1f}")


def _speed_cell(sp: list[dict]) -> str:
    return ", ".join("not reached" if x["factor"] is None else f"{x['factor']:.1f}x" for x in sp)


#: issue 12's targets (conservative forces, CLI defaults, equal steps), quoted beside the measured averages
TARGETS = {50: " (target: gain >= 60 %, speed-up >= 10x)", 200: " (target: gain >= 50 %)"}


#: footnote of the MACE energy cells: MACE's loss (energy 1 : forces 100) at these budgets fits forces and lets the
#: energy drift from its E0s (measured in experiments/mini_jmp/mace_small.yaml), so energies are not compared
MACE_ENERGY_NOTE = ("- MACE energies (†) are not compared: at these budgets MACE's force-weighted loss lets the energy "
                    "drift away from its E0 baseline (see experiments/mini_jmp/mace_small.yaml); gains vs MACE are on "
                    "forces only")


def _mace_gain(metric: str, e: dict) -> str:
    if "vs_mace" not in e:
        return "-"
    return f"{_ms(e['vs_mace']['gain_pct'])} %" if metric == "forces" else "†"


def table(summary: list[dict]) -> list[str]:
    lines = ["| task | N | steps | metric | pre-trained | scratch | MACE | pre - scratch (paired) | gain vs scratch | "
             "gain vs MACE | speed-up (steps, per seed) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary:
        for i, (m, e) in enumerate(r["test"].items()):
            v = e["vs_scratch"]
            lines.append(
                f"| {r['task']} | {r['n_train']} | {r['steps_budget']} | {m} ({e['unit']}) | {_ms(v['pretrained'])} | "
                f"{_ms(v['scratch'])} | {_ms(e['mace']) if 'mace' in e else '-'} | {_ms(v['difference'])} | "
                f"{_ms(v['gain_pct'])} % | {_mace_gain(m, e)} | "
                f"{_speed_cell(r['speedup']) if i == 0 else ''} |")
    lines.append("")
    if any("vs_mace" in e for r in summary for e in r["test"].values()):
        lines.append(MACE_ENERGY_NOTE)
    ff = [r for r in summary if r["kind"] == "force-field"]
    for n in sorted({r["n_train"] for r in ff}):
        sel = [r for r in ff if r["n_train"] == n]
        gain = np.mean([r["test"]["forces"]["vs_scratch"]["gain_pct"]["mean"] for r in sel])
        reached = [x["factor"] for r in sel for x in r["speedup"] if x["factor"] is not None]
        total = sum(len(r["speedup"]) for r in sel)
        mace = [r["test"]["forces"]["vs_mace"]["gain_pct"]["mean"] for r in sel if "vs_mace" in r["test"]["forces"]]
        lines.append(f"- force-field tasks at N = {n} ({len(sel)}: {', '.join(r['task'] for r in sel)}): mean test "
                     f"force-MAE gain over scratch {gain:+.1f} %"
                     + (f"; over MACE {np.mean(mace):+.1f} % ({len(mace)} tasks)" if mace else "")
                     + f"; speed-up reached in {len(reached)} of {total} pairs"
                     + (f", median {np.median(reached):.1f}x" if reached else "") + TARGETS.get(n, ""))
    prop = [r for r in summary if r["kind"] == "property"]
    for n in sorted({r["n_train"] for r in prop}):
        sel = [r for r in prop if r["n_train"] == n]
        lines.append(f"- property tasks at N = {n} ({len(sel)}): mean test-MAE gain over scratch "
                     f"{np.mean([r['test'][r['metric']]['vs_scratch']['gain_pct']['mean'] for r in sel]):+.1f} %")
    return lines


def plots(s: Settings, runs: list[dict], summary: list[dict]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = protocol_tasks(s.pbe_dir)
    style = {"pretrained": ("C0", "-"), "scratch": ("C1", "--"), "mace": ("C2", ":")}
    panels = [(r["task"], r["n_train"]) for r in summary]
    cols = min(4, max(1, len(panels)))
    nrow = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(nrow, cols, figsize=(4.2 * cols, 3.3 * nrow), squeeze=False)
    for ax, (name, n) in zip(axes.flat, panels):
        t = tasks[name]
        unit, scale = _unit(t, t.metric)
        for r in runs:
            if (r["task"], r["n_train"]) != (name, n) or r["curve"] is None:
                continue
            color, ls = style[r["mode"]]
            ax.plot(r["curve"]["steps"], np.asarray(r["curve"]["values"]) * scale, ls, color=color, lw=1.2,
                    marker=".", ms=3, label=r["mode"] if r["seed"] == min(s.seeds) else None)
        ax.set_yscale("log")
        ax.set_title(f"{name}, N = {n}", fontsize=9)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(f"val {t.metric} MAE ({unit})", fontsize=8)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"validation curves per mode (one line per seed); base {s.base}", fontsize=9)
    fig.tight_layout()
    curves = Path(s.out) / "learning_curves.png"
    fig.savefig(curves, dpi=100)
    plt.close(fig)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for k, name in enumerate(dict.fromkeys(r["task"] for r in summary)):
        sel = sorted((r for r in summary if r["task"] == name), key=lambda r: r["n_train"])
        m = sel[0]["metric"]
        x = [r["n_train"] for r in sel]
        g = [r["test"][m]["vs_scratch"]["gain_pct"] for r in sel]
        a1.errorbar(x, [v["mean"] for v in g], yerr=[v["sd"] or 0 for v in g], marker="o", capsize=3,
                    color=f"C{k % 10}", label=name)
        if tasks[name].kind == "force-field":
            for mode, key, mk in (("pretrained", "pretrained", "o"), ("scratch", "scratch", "s")):
                y = [r["test"]["forces"]["vs_scratch"][key]["mean"] for r in sel]
                a2.plot(x, y, style[mode][1], marker=mk, color=f"C{k % 10}", label=f"{name} {mode}")
            ym = [r["test"]["forces"]["mace"]["mean"] for r in sel if "mace" in r["test"]["forces"]]
            if len(ym) == len(x):
                a2.plot(x, ym, ":", marker="^", color=f"C{k % 10}", label=f"{name} MACE")
    ff = [r for r in summary if r["kind"] == "force-field"]
    sizes = sorted({r["n_train"] for r in ff})
    if ff:
        a1.plot(sizes, [np.mean([r["test"]["forces"]["vs_scratch"]["gain_pct"]["mean"] for r in ff
                                 if r["n_train"] == n]) for n in sizes], "k-", lw=2.5, alpha=0.6,
                label="mean of the force-field tasks")
    a1.axhline(0, color="k", lw=0.6)
    a1.set_xscale("log")
    a1.set_xlabel("training frames N")
    a1.set_ylabel("test-MAE gain over scratch (%)\n(forces; property for property tasks)", fontsize=8)
    a1.set_title("gain of pre-training vs training-set size (mean ± sd over seeds)", fontsize=9)
    a1.legend(fontsize=7)
    a2.set_xscale("log")
    a2.set_yscale("log")
    a2.set_xlabel("training frames N")
    a2.set_ylabel("test force MAE (meV/A)")
    a2.set_title("force-field tasks: pre-trained (o, solid), scratch (s, dashed), MACE (^, dotted)", fontsize=8)
    if a2.get_legend_handles_labels()[0]:
        a2.legend(fontsize=6, ncol=2)
    else:
        a2.text(0.5, 0.5, "no force-field task", ha="center", transform=a2.transAxes)
    fig.tight_layout()
    gain = Path(s.out) / "gain_vs_size.png"
    fig.savefig(gain, dpi=100)
    plt.close(fig)
    return [curves, gain]


def report(s: Settings) -> int:
    runs = collect_runs(s)
    summary = summarise(s, runs)
    if not summary:
        print(f"no finished pair of runs under {s.out}/runs yet")
        return 1
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(s).items()}
    (Path(s.out) / "protocol_results.json").write_text(
        json.dumps({"settings": settings, "summary": summary, "runs": runs}, indent=1) + "\n")
    lines = [f"Evaluation protocol, base `{s.base}` (conservative forces, training.finetune CLI defaults; "
             f"test MAE mean ± sd over seeds {', '.join(map(str, s.seeds))}; gain = 100 (1 - pre-trained / other), "
             "per seed; speed-up = scratch's best-validation step / first step the pre-trained running best "
             "reaches it)", ""] + table(summary)
    (Path(s.out) / "protocol_table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    pngs = plots(s, runs, summary)
    print("wrote " + ", ".join(str(p) for p in [Path(s.out) / "protocol_results.json",
                                                 Path(s.out) / "protocol_table.md", *pngs]))
    return 0


def compare(outs: list[Path], labels: list[str]) -> list[str]:
    """Test force MAE (the property for property tasks) per mode of several protocol runs side by side, e.g. the
    S and L backbones: ``compare --out runs/protocol/s-v2 runs/protocol/l-v2 --labels S L``."""
    results = [json.loads((Path(o) / "protocol_results.json").read_text()) for o in outs]
    keys = [(r["task"], r["n_train"]) for r in results[0]["summary"]]
    head = " | ".join(f"{lab} {mode}" for lab in labels for mode in ("scratch", "pre-trained", "gain"))
    lines = [f"| task | N | metric | {head} |", "|---|---|---|" + "---|" * (3 * len(labels))]
    for task, n in keys:
        cells, unit, metric = [], "", ""
        for res in results:
            r = next((x for x in res["summary"] if (x["task"], x["n_train"]) == (task, n)), None)
            if r is None:
                cells += ["-"] * 3
                continue
            metric = "forces" if r["kind"] == "force-field" else r["metric"]
            e = r["test"][metric]
            unit = e["unit"]
            v = e["vs_scratch"]
            cells += [_ms(v["scratch"]), _ms(v["pretrained"]), _ms(v["gain_pct"]) + " %"]
        lines.append(f"| {task} | {n} | {metric} ({unit}) | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.mini_jmp.protocol", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["run", "report", "plan", "compare"])
    ap.add_argument("--base", default="jmp-mini-s", help="pre-trained model: registry name or model directory")
    ap.add_argument("--out", type=Path, nargs="+", required=True,
                    help="protocol directory (runs/, data/, the report); compare: several")
    ap.add_argument("--labels", nargs="*", help="compare: a label per --out (default: the directory names)")
    ff = [k for k, t in protocol_tasks().items() if t.kind == "force-field"]
    ap.add_argument("--tasks", nargs="*", default=list(protocol_tasks()), choices=list(protocol_tasks()),
                    help=f"default: all ({', '.join(protocol_tasks())}); force-field tasks: {' '.join(ff)}")
    ap.add_argument("--sizes", nargs="*", type=int, default=[50, 200], help="training-set sizes (frames)")
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=1000, help="optimiser-step budget of every run (epochs = "
                    "round(steps / ceil(N / 8)), the same for every mode)")
    ap.add_argument("--epochs", type=int, help="epochs instead of --steps (tiny tests)")
    ap.add_argument("--max-val", type=int, help="subsample validation sets (tiny tests)")
    ap.add_argument("--max-test", type=int, help="subsample test sets (tiny tests)")
    ap.add_argument("--no-mace", action="store_true", help="skip the MACE baseline (drops mace from --modes)")
    ap.add_argument("--modes", nargs="*", default=list(MODES), choices=list(MODES),
                    help="run only these modes (e.g. the baselines, scratch and mace, which do not depend on --base, "
                         "while the backbone still trains); the others are planned out, not deleted")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    ap.add_argument("--pbe-dir", type=Path, default=PBE_DIR, help="the pbe-ethanol task files (datagen.pbe_relabel)")
    a = ap.parse_args(argv)
    if a.cmd == "compare":
        lines = compare(a.out, a.labels or [Path(o).name for o in a.out])
        print("\n".join(lines))
        return 0
    if len(a.out) != 1:
        raise SystemExit(f"{a.cmd}: one --out directory")
    modes = tuple(m for m in a.modes if not (a.no_mace and m == "mace"))
    s = Settings(base=a.base, out=a.out[0], tasks=tuple(a.tasks), sizes=tuple(a.sizes), seeds=tuple(a.seeds),
                 steps=a.steps, epochs=a.epochs, max_val=a.max_val, max_test=a.max_test,
                 modes=modes, threads=a.threads, jobs=a.jobs, pbe_dir=a.pbe_dir)
    if a.cmd == "plan":
        jobs = plan(s)
        todo = [j for j in jobs if not (j.out / "test_metrics.json").exists()]
        for j in jobs:
            print(f"{j.task.name} n{j.n} seed{j.seed} {j.mode}: {j.epochs} epochs "
                  f"({j.epochs * math.ceil(j.n / BATCH)} steps) -> {j.out}" + ("" if j in todo else " (done)"))
        print(f"{len(todo)} of {len(jobs)} runs to do, at most "
              f"{sum(j.epochs * math.ceil(j.n / BATCH) for j in todo):,} optimiser steps in all")
        return 0
    if a.cmd == "run":
        Path(s.out).mkdir(parents=True, exist_ok=True)
        rc = execute(s, plan(s))
        return report(s) or rc
    return report(s)


if __name__ == "__main__":
    sys.exit(main())
