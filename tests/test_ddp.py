"""DDP training, executed: ``python -m training.pretrain CFG --devices 2`` on CPU (Lightning's DDP, gloo) gives the
loss curve of one process at the same global batch size, and a DDP run killed mid-epoch resumes to the same curve."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("lightning")

from ase.io import write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from test_training import _frames  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cfg(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ddp")
    write(d / "slabs.extxyz", _frames("slab", 16, 0))
    write(d / "bulk.extxyz", _frames("bulk", 16, 1))
    p = d / "ddp.yaml"
    # no dropout (its masks are drawn per rank); scale factors fitted on the first 2 global batches
    p.write_text(
        "name: tiny-ddp\nout: OUT\nseed: 0\n"
        "model: {preset: tiny, overrides: {edge_dropout: 0.0}, fit_scale_factors_batches: 2}\n"
        "datasets:\n"
        f"  - {{name: slabs, train: {d / 'slabs.extxyz'}, graph: {{cutoff: 4.5, max_neighbors: 12}}}}\n"
        f"  - {{name: bulk, train: {d / 'bulk.extxyz'}, graph: {{cutoff: 4.5, max_neighbors: 12}}}}\n"
        "sampling: {temperature: 2.0}\noptim: {lr: 1.0e-3, warmup_steps: 4}\n"
        "trainer: {max_epochs: 2, batch_size: 4, checkpoint_every_n_steps: 2, progress: false, threads: 1, "
        "accelerator: cpu}\n")
    return p


def _cmd(cfg: Path, out: Path, devices: int, *extra: str) -> list[str]:
    # the same global batch: 4 structures in one process, 2 per process with two
    ddp = [f"trainer.batch_size={4 // devices}", "--devices", str(devices)] if devices > 1 else []
    return [sys.executable, "-m", "training.pretrain", str(cfg), f"out={out}", *ddp, *extra]


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


def _train(cfg: Path, out: Path, devices: int, *extra: str) -> Path:
    r = subprocess.run(_cmd(cfg, out, devices, *extra), cwd=ROOT, env=_env(), capture_output=True, text=True,
                       timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def _rows(out: Path) -> list[dict]:
    with open(out / "metrics.csv") as fh:
        return [{k: float(v) for k, v in r.items() if k not in ("wall_s",) and v != ""} for r in csv.DictReader(fh)]


def _weights(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(out / "model" / "model.safetensors")


def _same_curve(a: list[dict], b: list[dict], rel: float) -> float:
    """Asserts equal metrics.csv rows (every train/val metric of every epoch); returns the largest relative
    difference of the losses."""
    assert len(a) == len(b) == 2
    worst = 0.0
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        assert (x["epoch"], x["step"]) == (y["epoch"], y["step"])
        for k in x:
            assert x[k] == pytest.approx(y[k], rel=rel, abs=1e-9), (x["epoch"], k)
            if k.endswith("loss"):
                worst = max(worst, abs(x[k] - y[k]) / abs(y[k]))
    return worst


@pytest.fixture(scope="module")
def ddp_run(cfg, tmp_path_factory) -> Path:
    return _train(cfg, tmp_path_factory.mktemp("two") / "run", 2)


def test_two_processes_give_the_single_process_curve(cfg, ddp_run, tmp_path):
    one = _train(cfg, tmp_path / "one", 1)
    worst = _same_curve(_rows(ddp_run), _rows(one), rel=2e-5)  # measured: 3e-6 (losses 5e-7)
    wa, wb = _weights(ddp_run), _weights(one)
    dw = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    print(f"DDP (2 x 2) vs 1 process (4): largest relative loss difference {worst:.2e}, weights {dw:.2e}")
    # measured: 6e-8 on one machine, 1.2e-6 on another (2026-12-02, the same on the code of f957dc2 and of now):
    # float32 reduction order differs between the two runs; a wrong gradient average is off by ~1e-2
    assert dw < 1e-5
    # not a vacuous match: the curve moved (and had rank 1 trained on rank 0's half, as it did before the
    # sampler took its rank from the trainer, epoch 0's loss differed by 2x)
    rows = _rows(one)
    assert rows[1]["train/loss"] < rows[0]["train/loss"]


@pytest.fixture(scope="module")
def resumed(cfg, tmp_path_factory) -> Path:
    """A DDP run killed (both ranks, SIGKILL) inside its first epoch, then resumed with --resume."""
    out = tmp_path_factory.mktemp("cut") / "run"
    p = subprocess.Popen(_cmd(cfg, out, 2), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)  # one group: both ranks
    last = out / "checkpoints" / "last.ckpt"
    t0 = time.time()
    while not last.exists() and p.poll() is None and time.time() - t0 < 300:
        time.sleep(0.05)
    time.sleep(0.2)  # let the checkpoint's write finish
    assert p.poll() is None, "the run ended before it could be killed"
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["jmp_calc"]["batches_this_epoch"] > 0 and state["epoch"] == 0  # killed inside epoch 0
    return _train(cfg, out, 2, "--resume")


def test_ddp_killed_mid_epoch_resumes_to_the_same_curve(resumed, ddp_run):
    a, b = _rows(resumed), _rows(ddp_run)
    wa, wb = _weights(resumed), _weights(ddp_run)
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-6
    for x, y in zip(a, b):  # the validation curve, and the training metrics of the epochs after the kill
        for k in x:
            if k.startswith("val/") or x["epoch"] > 0:
                assert x[k] == pytest.approx(y[k], rel=1e-6, abs=1e-9), (x["epoch"], k)
    assert len(a) == len(b) == 2


def test_ddp_resumed_epoch_train_metrics(resumed, ddp_run):
    _same_curve(_rows(resumed), _rows(ddp_run), rel=1e-6)
