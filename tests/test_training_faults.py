"""Faults of training runs on tiny generated data: a fine-tuning run stopped and killed at random steps and resumed
ends exactly as an uninterrupted one; a NaN loss stops the run with one message naming step, batch, structures and
dataset; an unusable output directory (under a file, read-only, disk full) fails before any data is read, with one
error line and nothing written; training files with missing labels fail naming the file and record."""

from __future__ import annotations

import csv
import errno
import os
import random
import subprocess
import sys
import textwrap
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lightning")

from ase.build import bulk  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402
from ase.io import write  # noqa: E402

from training.config import ConfigError  # noqa: E402
from training.data.base import DataError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# kills itself (SIGKILL: no handler runs, as when a node dies) inside the training step after KILL_AT optimizer steps
KILLER = textwrap.dedent("""
    import os, signal, sys
    from training.module import JMPTrainModule
    kill_at, step = int(sys.argv[1]), JMPTrainModule.training_step
    def training_step(self, b, i):
        if self.global_step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return step(self, b, i)
    JMPTrainModule.training_step = training_step
    from training.finetune import main
    sys.exit(main(sys.argv[2:]))
""")


def _bulk_frames(n: int, seed: int):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a = bulk(["Cu", "Ni", "Pd"][i % 3]) * (2, 1, 1)
        a.set_cell(a.cell * (1 + 0.02 * rng.standard_normal()), scale_atoms=True)
        a.rattle(0.08, seed=int(rng.integers(1 << 30)))
        a.calc = EMT()
        a.get_potential_energy(), a.get_forces(), a.get_stress()
        out.append(a)
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    write(d / "train.extxyz", _bulk_frames(24, 1))
    write(d / "val.extxyz", _bulk_frames(6, 2))
    return d


def _args(data, out, *extra):
    """3 epochs of 6 steps, a checkpoint every 2 steps, edge dropout (the RNG stream must resume too)."""
    return ["--base", "jmp-mini-emt", "--train", str(data / "train.extxyz"), "--valid", str(data / "val.extxyz"),
            "--out", str(out), "--epochs", "3", "--batch-size", "4", "--checkpoint-every", "2", "--lr", "1e-3",
            "--warmup-epochs", "1", "--cosine-epochs", "3", "--edge-dropout", "0.1", "--threads", "1",
            "--no-progress", *extra]


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_finetune_stopped_killed_and_resumed_matches_uninterrupted(data, tmp_path):
    """Stopped at a random step as a time limit stops it (``--max-steps``), resumed, SIGKILLed at a later random
    step, resumed again (from a checkpoint the first resumed process wrote): the same metrics and weights."""
    from safetensors.torch import load_file

    from training.finetune import main

    ref, cut = tmp_path / "ref", tmp_path / "cut"
    assert main(_args(data, ref)) == 0
    rng = random.Random()
    k1 = rng.randint(1, 10)  # 18 steps in all, epochs end at steps 6, 12, 18, a checkpoint every 2 steps
    k2 = rng.randint(k1 + 1, 16)
    assert main(_args(data, cut, "--max-steps", str(k1))) == 0
    r = subprocess.run([sys.executable, "-c", KILLER, str(k2), *_args(data, cut, "--resume")], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == -9, f"stopped at step {k1}, kill at {k2}: {r.stderr[-2000:]}"
    assert main(_args(data, cut, "--resume")) == 0
    a, b = _rows(ref / "metrics.csv"), _rows(cut / "metrics.csv")
    assert [r["epoch"] for r in b] == ["0", "1", "2"] and [r["step"] for r in b] == ["6", "12", "18"]
    for x, y in zip(a, b):
        for key in x:
            if key.startswith(("train/", "val/")):
                assert float(y[key]) == pytest.approx(float(x[key]), rel=1e-6), (f"stopped at step {k1}, killed at "
                                                                                 f"{k2}: epoch {x['epoch']} {key}")
    wa, wb = load_file(ref / "model" / "model.safetensors"), load_file(cut / "model" / "model.safetensors")
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-6, f"stopped at step {k1}, killed at {k2}"


def test_nan_loss_names_step_batch_structures_and_dataset(data, tmp_path, monkeypatch, capsys):
    from training import module
    from training.finetune import main

    seen = []
    step, energies = module.JMPTrainModule.training_step, module.JMPTrainModule._energies

    def training_step(self, b, i):
        seen.append(list(b.sources))
        return step(self, b, i)

    def poisoned(self, out_e, g, heads):  # the model diverges on the second structure of the third batch
        e = energies(self, out_e, g, heads)
        return e.index_fill(0, e.new_tensor([1], dtype=int), float("nan")) if self.training and \
            self.global_step == 2 else e

    monkeypatch.setattr(module.JMPTrainModule, "training_step", training_step)
    monkeypatch.setattr(module.JMPTrainModule, "_energies", poisoned)
    assert main(_args(data, tmp_path / "nan")) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, errors
    assert "non-finite loss (nan) at training step 2 (epoch 0, batch 2): 1 of 4 structures, dataset energy: " \
           f"{seen[-1][1]}" in errors[0]
    assert seen[-1][1].startswith(str(data / "train.extxyz") + ":")


def test_nan_label_fails_at_load_naming_the_frame(data, tmp_path, capsys):
    from training.finetune import main

    frames = _bulk_frames(8, 5)
    frames[3].calc.results["energy"] = float("nan")
    frames[5].calc.results["forces"][1, 2] = float("inf")
    write(tmp_path / "nan.extxyz", frames)
    assert main(_args(data, tmp_path / "out", "--train", str(tmp_path / "nan.extxyz"))) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'nan.extxyz'}:3: non-finite energy (nan)" in err
    frames[3].calc.results["energy"] = -1.0
    write(tmp_path / "inf.extxyz", frames)
    assert main(_args(data, tmp_path / "out", "--train", str(tmp_path / "inf.extxyz"))) == 2
    assert f"{tmp_path / 'inf.extxyz'}:5: non-finite forces (inf at [1, 2])" in capsys.readouterr().err


def test_missing_forces_fail_naming_the_record(data, tmp_path, capsys):
    from training.batching import Collater
    from training.data.base import Sample
    from training.finetune import main
    from training.task import Task

    frames = _bulk_frames(8, 6)
    del frames[5].calc.results["forces"]  # only frame 5: the first frame has forces
    write(tmp_path / "noforces.extxyz", frames)
    assert main(_args(data, tmp_path / "out", "--train", str(tmp_path / "noforces.extxyz"))) == 2
    assert f"{tmp_path / 'noforces.extxyz'}:5: no forces" in capsys.readouterr().err
    # lazy formats (LMDB, HDF5, ASE db) are checked record by record when batched
    from jmp_calc.config import GraphConfig

    collate = Collater([Task("oc20", GraphConfig(cutoff=4.0, max_neighbors=8), head=0, energy=True,
                             forces="direct")], [1, 2])
    ok = Sample([29, 29], [[0, 0, 0], [0, 0, 2.5]], energy=-1.0, forces=np.zeros((2, 3)), source="a.lmdb:0")
    assert len(collate([(ok, 0)])) == 1
    bad = Sample([29, 29], [[0, 0, 0], [0, 0, 2.5]], energy=-1.0, source="a.lmdb:17")
    with pytest.raises(DataError, match=r"a\.lmdb:17: no forces, but dataset oc20 trains on forces"):
        collate([(ok, 0), (bad, 0)])


def _no_trace(path: Path) -> bool:
    return not path.exists() and not (path.parent / ".write_test").exists()


def test_unusable_output_dir_fails_before_reading_data(tmp_path, monkeypatch, capsys):
    from training import runner
    from training.finetune import main

    missing = tmp_path / "no-such-data.extxyz"  # the output check must come first: this file is never opened
    args = ["--base", "jmp-mini-emt", "--train", str(missing), "--no-progress", "--out"]

    def one_error_line():
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and err[0].startswith("error: output directory"), err
        return err[0]

    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(args + [str(blocker / "sub" / "out")]) == 2
    assert "is a file" in one_error_line() and blocker.read_text() == "x"

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.geteuid() == 0:  # root writes through permission bits: make the write probe fail as it would
        write_bytes = Path.write_bytes

        def denied(self, data):
            if self.name == ".write_test":
                raise PermissionError(errno.EACCES, "Permission denied", str(self))
            return write_bytes(self, data)

        monkeypatch.setattr(Path, "write_bytes", denied)
    try:
        assert main(args + [str(ro / "a" / "out")]) == 2
        assert "not writable: Permission denied" in one_error_line()
        assert list(ro.iterdir()) == []  # the directories it made for the probe are gone again
    finally:
        ro.chmod(0o700)
    monkeypatch.undo()

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(runner.shutil, "disk_usage", lambda p: usage(2**40, 2**40 - 50 * 2**20, 50 * 2**20))
    assert main(args + [str(tmp_path / "full" / "out")]) == 2
    assert "only 50 MiB free on its disk; this run's checkpoints need at least 200 MiB" in one_error_line()
    assert _no_trace(tmp_path / "full" / "out") and not (tmp_path / "full").exists()
    # the check in fit() asks for what this model's checkpoints take: weights, EMA, AdamW moments, 3 files
    import torch

    from training.runner import check_output_dir, checkpoint_bytes

    big = torch.nn.Linear(1000, 10_000)  # 10 M parameters: 521 MiB of checkpoints
    assert checkpoint_bytes(big) == 4 * 10_010_000 * 13
    monkeypatch.setattr(runner.shutil, "disk_usage", lambda p: usage(2**40, 0, 300 * 2**20))
    check_output_dir(tmp_path / "ok")
    with pytest.raises(ConfigError, match="only 300 MiB free on its disk; this run's checkpoints need at least 496"):
        check_output_dir(tmp_path / "big", checkpoint_bytes(big))
    assert _no_trace(tmp_path / "big")


def test_pretrain_checks_the_output_dir_first(tmp_path, capsys):
    from training.pretrain import main

    blocker = tmp_path / "file"
    blocker.write_text("x")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"name: x\nout: {blocker / 'out'}\ndatasets: [{{name: a, train: {tmp_path / 'none.extxyz'}}}]\n")
    assert main([str(cfg)]) == 2
    assert [line for line in capsys.readouterr().err.splitlines() if line.strip()] == [
        f"error: output directory {blocker / 'out'} cannot be created: {blocker} is a file"]
