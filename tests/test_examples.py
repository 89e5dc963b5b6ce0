"""The README demo runs end to end (shortened MD) and writes its figures."""

import subprocess
import sys

import pytest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_runs(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py"), "--out", str(tmp_path), "--md-steps", "10"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("relax_O_Cu111.png", "md_energy_Cu.png", "phonons_Cu.png"):
        assert (tmp_path / name).stat().st_size > 10_000, name
    assert "EMT" in r.stdout


def test_md_energy_conservation_example_with_the_shipped_molecule_model(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "md_energy_conservation.py"), "--out", str(tmp_path),
                        "--steps", "20"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "jmp-mini-s-ethanol" in r.stdout
    assert (tmp_path / "md_energy_ethanol.png").stat().st_size > 10_000
