"""The small trainer runs end to end on freshly generated EMT data and writes a model JMPCalculator loads."""

import json

import numpy as np
from ase.io import write

from experiments.mini_jmp.datagen.emt_surfaces import generate
from experiments.mini_jmp.quickfit import main
from jmp_calc import JMPCalculator


def test_generate_train_and_load(tmp_path):
    groups = generate(n_slabs=2, n_bulk=4, seed=3, max_steps=5)
    frames = [f for g in groups for f in g]
    assert all("energy" in f.calc.results and "forces" in f.calc.results for f in frames)
    write(tmp_path / "train.extxyz", frames[:-3])
    write(tmp_path / "valid.extxyz", frames[-3:])
    out = tmp_path / "model"
    main(["--train", str(tmp_path / "train.extxyz"), "--valid", str(tmp_path / "valid.extxyz"), "--out", str(out),
          "--max-time", "0.01", "--batch-size", "4", "--threads", "1"])
    card = json.loads((out / "config.json").read_text())["card"]
    assert card["valid_metrics"]["forces_mae_ev_per_a"] > 0
    atoms = frames[-1].copy()  # a bulk frame (periodic in 3D: stress is defined)
    atoms.calc = JMPCalculator(out, dtype="float64")
    assert np.isfinite(atoms.get_potential_energy())
    assert atoms.get_stress().shape == (6,)
