"""The MACE baseline of the evaluation protocol: a small MACE trained from scratch on the same frames and epochs.

    python -m experiments.mini_jmp.mace_baseline --train T.extxyz --valid V.extxyz --test X.extxyz --out DIR \
        --epochs N [--seed S] [--threads 1]

What a user would pick instead of fine-tuning a pre-trained GemNet-OC (issue 12, targets): mace-torch's
``mace_run_train`` (installed with ``pip install mace-torch -c constraints.txt``; it keeps torch 2.13.0+cpu) with the
documented config ``experiments/mini_jmp/mace_small.yaml``. The frames are copied to ``DIR/data/`` with the labels
under MACE's ``REF_energy`` / ``REF_forces`` keys. MACE keeps the checkpoint of the best validation loss, which is
the model evaluated here on TEST with the same MAEs as ``training.evaluate`` (energy per atom; forces per Cartesian
component). Writes ``DIR/test_metrics.json`` (``energy``, ``energy_per_atom``, ``forces``: ``{mae, rmse, n}``) and
``DIR/val_curve.csv`` (epoch, step, val energy-per-atom and force MAE, from MACE's results log; MACE drops the
last incomplete batch, so an epoch is floor(N / 8) steps, against ceil(N / 8) for training.finetune). A run whose
``test_metrics.json`` exists is skipped; an interrupted one restarts from its latest checkpoint.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CONFIG = Path(__file__).with_name("mace_small.yaml")
NAME = "mace"


def write_mace_frames(src: Path, dst: Path) -> int:
    """Copy of ``src`` (any ASE-readable file with energies and forces) with the labels under REF_ keys."""
    from ase import Atoms
    from ase.io import read, write

    frames = read(src, index=":")
    out = []
    for a in frames:
        b = Atoms(a.numbers, positions=a.positions, cell=a.cell, pbc=a.pbc)
        b.info["REF_energy"] = float(a.get_potential_energy())
        b.arrays["REF_forces"] = np.asarray(a.get_forces(apply_constraint=False), dtype=float)
        out.append(b)
    dst.parent.mkdir(parents=True, exist_ok=True)
    write(dst, out, format="extxyz")
    return len(out)


def mace_command(train: Path, valid: Path, out: Path, epochs: int, seed: int, config: Path = CONFIG) -> list[str]:
    exe = Path(sys.executable).with_name("mace_run_train")
    cmd = [str(exe), "--config", str(config), "--name", NAME, "--work_dir", str(out), "--seed", str(seed),
           "--train_file", str(train), "--valid_file", str(valid), "--max_num_epochs", str(epochs)]
    if (out / "checkpoints").is_dir() and any((out / "checkpoints").iterdir()):
        cmd.append("--restart_latest")
    return cmd


def _mae(err) -> dict:
    err = np.asarray(err, dtype=float).ravel()
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2))), "n": int(err.size)}


def evaluate(model: Path, test: Path, device: str = "cpu") -> dict:
    """Test MAEs of a MACE model file, as ``training.evaluate`` defines them."""
    from ase.io import read
    from mace.calculators import MACECalculator

    calc = MACECalculator(model_paths=str(model), device=device, default_dtype="float64")
    n_params = sum(p.numel() for p in calc.models[0].parameters())
    de, dea, df = [], [], []
    for a in read(test, index=":"):
        e_ref, f_ref = float(a.get_potential_energy()), a.get_forces(apply_constraint=False)
        b = a.copy()
        b.calc = calc
        e, f = float(b.get_potential_energy()), b.get_forces()
        de.append(e - e_ref)
        dea.append((e - e_ref) / len(a))
        df.append(f - f_ref)
    return {"energy": _mae(de), "energy_per_atom": _mae(dea), "forces": _mae(np.concatenate(df)),
            "parameters": int(n_params)}


def val_curve(out: Path, steps_per_epoch: int) -> list[dict]:
    """Validation MAEs per evaluated epoch from MACE's results log (JSON lines with ``mode: eval``)."""
    rows = []
    for path in sorted((out / "results").glob(f"{NAME}*_train.txt")):
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            if r.get("mode") != "eval" or r.get("epoch") is None:
                continue
            epoch = int(r["epoch"])  # MACE counts from 0; the log holds the epoch just trained
            rows.append({"epoch": epoch, "step": (epoch + 1) * steps_per_epoch,
                         "val_energy_per_atom": r.get("mae_e_per_atom"), "val_forces": r.get("mae_f")})
    return rows


def run(train: Path, valid: Path, test: Path, out: Path, epochs: int, seed: int = 0, threads: int = 1,
        batch_size: int = 8, config: Path = CONFIG) -> dict:
    out = Path(out)
    done = out / "test_metrics.json"
    if done.exists():
        return json.loads(done.read_text())
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    n_train = write_mace_frames(Path(train), data / "train.extxyz")
    if n_train < batch_size:
        raise SystemExit(f"{train}: {n_train} frames, fewer than MACE's batch of {batch_size} (it drops incomplete "
                         "batches, so it would not train)")
    write_mace_frames(Path(valid), data / "valid.extxyz")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    t0 = time.time()
    with open(out / "log.txt", "a") as log:
        rc = subprocess.call(mace_command(data / "train.extxyz", data / "valid.extxyz", out, epochs, seed, config),
                             stdout=log, stderr=subprocess.STDOUT, env=env)
    wall = time.time() - t0
    model = out / f"{NAME}.model"
    if rc != 0 or not model.exists():
        raise SystemExit(f"mace_run_train failed (rc {rc}); see {out / 'log.txt'}")
    curve = val_curve(out, n_train // batch_size)  # MACE's training loader drops the last incomplete batch
    with open(out / "val_curve.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["epoch", "step", "val_energy_per_atom", "val_forces"])
        w.writeheader()
        w.writerows(curve)
    report = evaluate(model, Path(test))
    report["run"] = {"parameters": report.pop("parameters"), "epochs": epochs, "seed": seed, "n_train": n_train,
                     "wall_s": round(wall, 1), "config": str(config), "model": str(model),
                     "mace_version": _mace_version()}
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, done)
    shutil.rmtree(data, ignore_errors=True)  # copies of the caller's frames
    return report


def _mace_version() -> str:
    from importlib.metadata import version

    return version("mace-torch")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.mini_jmp.mace_baseline", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, required=True)
    ap.add_argument("--valid", type=Path, required=True)
    ap.add_argument("--test", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--config", type=Path, default=CONFIG)
    args = ap.parse_args(argv)
    print(json.dumps(run(args.train, args.valid, args.test, args.out, args.epochs, args.seed, args.threads,
                         config=args.config), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
