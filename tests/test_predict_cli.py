"""python -m jmp_calc.predict: results equal the calculator's, failures go to the sidecar, a stopped or killed run
resumes to the same bytes, and two torchrun processes write exactly the single-process output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from jmp_calc import JMPCalculator
from jmp_calc.predict import main

ROOT = Path(__file__).resolve().parents[1]
BAD = {3: "closer than", 8: "atomic numbers"}  # index -> what the sidecar's reason says


def _structures(n: int = 12) -> list[Atoms]:
    out = []
    for i in range(n):
        a = [molecule("H2O"), molecule("CH4"), bulk("Cu", cubic=True), molecule("C2H6"),
             bulk("Cu", "fcc", a=3.7)][i % 5].copy()
        a.rattle(0.02, seed=i)
        a.info["name"] = f"s{i}"
        out.append(a)
    out[3] = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.05]])  # overlapping atoms
    out[8] = Atoms(numbers=[0, 1], positions=[[0, 0, 0], [0, 0, 1.0]])  # no element 0
    return out


@pytest.fixture(scope="module")
def one_thread():
    """Every run of this module (in-process and subprocess) on one thread: equal bits need equal reductions."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def case(tmp_path_factory, one_thread):
    d = tmp_path_factory.mktemp("predict")
    ase.io.write(d / "in.extxyz", _structures())
    out = d / "ref.extxyz"
    assert main([str(d / "in.extxyz"), "-o", str(out), "--batch-size", "2", "--no-progress"]) == 0
    return d, out


def _run(d: Path, name: str, *extra: str) -> tuple[int, Path]:
    out = d / name
    return main([str(d / "in.extxyz"), "-o", str(out), "--batch-size", "2", "--no-progress", *extra]), out


def test_cli_equals_calculator(case, one_thread):
    d, out = case
    frames = ase.io.read(out, ":")
    good = [i for i in range(12) if i not in BAD]
    assert [f.info["input_index"] for f in frames] == good
    assert [f.info["name"] for f in frames] == [f"s{i}" for i in good]  # the input's info is kept
    structures = ase.io.read(d / "in.extxyz", ":")  # the file's (rounded) positions, not _structures()'
    calc, expected = JMPCalculator(), []
    for start in range(0, 12, 2):  # blocks of --batch-size; a block with a bad structure is evaluated without it
        block = [i for i in (start, start + 1) if i not in BAD]
        if len(block) == 2:
            expected += calc.predict_many([structures[i] for i in block])
        else:
            expected += calc.predict_many([structures[block[0]]])
    for f, e, i in zip(frames, expected, good):
        assert f.get_potential_energy() == pytest.approx(e["energy"], rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(f.get_forces(), e["forces"], atol=1e-7)  # extxyz writes 8 decimals
        np.testing.assert_allclose(f.positions, structures[i].positions, atol=1e-7)
        if structures[i].pbc.all():
            np.testing.assert_allclose(f.get_stress(), e["stress"], rtol=1e-12, atol=1e-12)
        else:
            assert "stress" not in f.calc.results
    errors = [json.loads(line) for line in (d / "ref.extxyz.errors.jsonl").read_text().splitlines()]
    assert [e["index"] for e in errors] == sorted(BAD)
    for e in errors:
        assert BAD[e["index"]] in e["error"]
        assert e["source"].endswith(f"in.extxyz:{e['index']}")
    assert not (d / "ref.extxyz.parts").exists()


def test_relax(tmp_path, one_thread):
    ase.io.write(tmp_path / "in.extxyz", _structures()[:5])  # index 3: overlapping atoms
    structures = ase.io.read(tmp_path / "in.extxyz", ":")
    assert main([str(tmp_path / "in.extxyz"), "-o", str(tmp_path / "r.extxyz"), "--relax", "--fmax", "0.1",
                 "--steps", "4", "--no-progress"]) == 0
    frames = ase.io.read(tmp_path / "r.extxyz", ":")
    assert [f.info["input_index"] for f in frames] == [0, 1, 2, 4]
    from jmp_calc.simulate import relax_many

    # the others relax in lock-step as in a run without the bad structure (relax_many(on_error="skip"))
    good = [structures[i].copy() for i in (0, 1, 2, 4)]
    done = relax_many(good, JMPCalculator(), fmax=0.1, steps=4, progress=False)
    for f, a, r in zip(frames, good, done):
        np.testing.assert_allclose(f.positions, a.positions, atol=1e-7)
        assert f.get_potential_energy() == pytest.approx(r["energy"], rel=1e-12)
        assert f.info["relax_steps"] == r["steps"] and f.info["relax_converged"] == r["converged"]
    error = json.loads((tmp_path / "r.extxyz.errors.jsonl").read_text())
    assert error["index"] == 3 and "closer than" in error["error"]


def test_stop_and_resume_gives_the_same_bytes(case, one_thread, capsys):
    d, ref = case
    rc, out = _run(d, "resumed.extxyz", "--stop-after", "2")
    assert rc == 0 and not out.exists()
    parts = sorted(p.name for p in (d / "resumed.extxyz.parts").glob("b*.extxyz"))
    assert parts == ["b000000000.extxyz", "b000000001.extxyz"]
    # another batch size is another run: refused, not mixed
    rc = main([str(d / "in.extxyz"), "-o", str(out), "--batch-size", "3", "--no-progress"])
    assert rc == 2 and "batch_size: 2 -> 3" in capsys.readouterr().err
    rc, _ = _run(d, "resumed.extxyz")
    assert rc == 0
    assert out.read_bytes() == ref.read_bytes()
    assert (d / "resumed.extxyz.errors.jsonl").read_bytes() == (d / "ref.extxyz.errors.jsonl").read_bytes()
    # a finished output is not overwritten by accident
    rc, _ = _run(d, "resumed.extxyz")
    assert rc == 2 and "--overwrite" in capsys.readouterr().err


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


@pytest.mark.slow  # a subprocess: 10-20 s on 2 shared cores; test_stop_and_resume covers the same path fast
def test_resume_after_kill(case, one_thread):
    d, ref = case
    out = d / "killed.extxyz"
    cmd = [sys.executable, "-m", "jmp_calc.predict", str(d / "in.extxyz"), "-o", str(out), "--batch-size", "2",
           "--no-progress"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = d / "killed.extxyz.parts"
    deadline = time.monotonic() + 120
    while not list(parts.glob("b*.extxyz")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "the run finished before it could be killed"
    done = len(list(parts.glob("b*.extxyz")))
    assert 1 <= done < 6
    rc, _ = _run(d, "killed.extxyz")
    assert rc == 0 and out.read_bytes() == ref.read_bytes()


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(case, one_thread):
    d, ref = case
    out = d / "ddp.extxyz"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "jmp_calc.predict", str(d / "in.extxyz"),
           "-o", str(out), "--batch-size", "2", "--no-progress", "--device", "cpu"]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    # 12 structures in 6 blocks of 2; rank r evaluates blocks b % 2 == r
    assert "rank 0 of 2: 3 block(s) evaluated" in r.stderr and "rank 1 of 2: 3 block(s) evaluated" in r.stderr
    assert out.read_bytes() == ref.read_bytes()
    assert (d / "ddp.extxyz.errors.jsonl").read_bytes() == (d / "ref.extxyz.errors.jsonl").read_bytes()
