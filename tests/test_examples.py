"""The README demo runs end to end (shortened MD) and writes its figures."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_runs(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py"), "--out", str(tmp_path), "--md-steps", "10"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("relax_O_Cu111.png", "md_energy_Cu.png", "phonons_Cu.png"):
        assert (tmp_path / name).stat().st_size > 10_000, name
    assert "EMT" in r.stdout


def test_md_energy_conservation_example_with_the_default_model(tmp_path):
    """A few NVE steps of ethanol with the default model: the molecules head, CSV + PNG, energy conserved, quiet."""
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "md_energy_conservation.py"), "--out", str(tmp_path),
                        "--steps", "10", "--name", "t"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Warning" not in r.stderr, r.stderr[-2000:]
    assert "jmp-mini-general" in r.stdout
    assert (tmp_path / "t.png").stat().st_size > 10_000
    lines = (tmp_path / "t_ethanol.csv").read_text().splitlines()
    assert "# steps_done = 10" in lines and "# n_atoms = 9" in lines
    import numpy as np

    d = np.loadtxt(lines, delimiter=",", comments="#", ndmin=2)
    assert d[0, 0] == 0 and d[-1, 0] == 5.0  # 10 steps of 0.5 fs, first and last step kept
    assert np.allclose(d[:, 1], d[:, 2] + d[:, 3])
    assert abs(d[-1, 1] - d[0, 1]) / 9 < 1e-3, d[:, 1]  # < 1 meV/atom in 5 fs (broken forces give far more)
