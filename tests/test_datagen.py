"""Fast checks of the mini-JMP generators (training/datagen) on tiny sizes, and of the committed data/mini manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.datagen import common, mini_ani1x, mini_matbench, mini_md22, mini_oc20, mini_rmd17, mini_t1x

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "data" / "mini"


def _read(out: Path) -> dict:
    return {s: common.read_extxyz_gz(out / f"{s}.extxyz.gz") if (out / f"{s}.extxyz.gz").exists() else []
            for s in common.SPLITS}


def _check_frames(frames, dataset, stress=False):
    assert frames
    for f in frames:
        assert f.info["dataset"] == dataset
        assert np.isfinite(f.get_potential_energy())
        forces = f.get_forces(apply_constraint=False)
        assert forces.shape == (len(f), 3) and np.all(np.isfinite(forces))
        if stress:
            assert np.all(np.isfinite(f.get_stress()))


def _disjoint(splits, key):
    sets = {s: {f.info[key] for f in frames} for s, frames in splits.items()}
    assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"] and not sets["val"] & sets["test"]


def test_oc20_tiny_resume(tmp_path, monkeypatch):
    out = tmp_path / "oc20"
    assert mini_oc20.generate(out, n=3, max_steps=3, chunk_size=1, stop_after_chunks=1, progress=False) is None
    assert sorted(p.name for p in (out / ".chunks").glob("c*.json")) == ["c00000.json"]
    calls = []
    real = mini_oc20.trajectory
    monkeypatch.setattr(mini_oc20, "trajectory", lambda u, *a: calls.append(u["id"]) or real(u, *a))
    meta = mini_oc20.generate(out, n=3, max_steps=3, chunk_size=1, progress=False)
    assert calls == [1, 2]  # chunk 0 was not recomputed
    assert not (out / ".chunks").exists() and meta["frames"] == sum(f["frames"] for f in meta["files"])
    calls.clear()
    assert mini_oc20.generate(out, n=3, max_steps=3, chunk_size=1, progress=False)["frames"] == meta["frames"]
    assert calls == []  # finished dataset is skipped
    splits = _read(out)
    frames = [f for s in splits.values() for f in s]
    _check_frames(frames, "mini-oc20")
    assert len(frames) == meta["frames"]
    for f in frames:
        assert set(f.get_tags()) == {0, 1, 2} and not f.pbc[2] and f.constraints
    _disjoint(splits, "sid")


def test_gzip_output_is_deterministic(tmp_path):
    from ase.build import molecule

    atoms = common.single_point(molecule("H2O"), calc=__import__("ase.calculators.emt", fromlist=["EMT"]).EMT())
    common.write_extxyz_gz(tmp_path / "a.extxyz.gz", [atoms])
    common.write_extxyz_gz(tmp_path / "b.extxyz.gz", [atoms])
    assert common.sha256(tmp_path / "a.extxyz.gz") == common.sha256(tmp_path / "b.extxyz.gz")
    from ase.io import read  # plain ase.io.read works on the .gz files

    assert read(tmp_path / "a.extxyz.gz").get_potential_energy() == pytest.approx(atoms.get_potential_energy())


def _split_file():
    return MINI / "qm9_split.json" if (MINI / "qm9_split.json").exists() else None


def test_ani1x_and_t1x_tiny_use_qm9_train_molecules(tmp_path):
    from training.datagen.qm9_split import train_ids

    train = set(train_ids(_split_file()))
    meta = mini_ani1x.generate(tmp_path / "ani", n=3, n_rattle=1, md_steps=2, md_stride=1,
                               split_file=_split_file(), chunk_size=2, progress=False)
    splits = _read(tmp_path / "ani")
    frames = [f for s in splits.values() for f in s]
    _check_frames(frames, "mini-ani1x")
    assert meta["frames"] == len(frames) and {f.info["sampling"] for f in frames} == {"rattle", "md"}
    assert all(int(f.info["qm9_index"]) in train and f.info["smiles"] for f in frames)
    _disjoint(splits, "molecule")

    mini_t1x.generate(tmp_path / "t1x", n=2, images=3, split_file=_split_file(), progress=False)
    frames = [f for s in _read(tmp_path / "t1x").values() for f in s]
    _check_frames(frames, "mini-t1x")
    assert all(int(f.info["qm9_index"]) in train for f in frames)


def test_qm9_split_file_disjoint():
    path = _split_file()
    assert path is not None, "data/mini/qm9_split.json is committed data and must be present"
    doc = json.loads(path.read_text())
    sets = [set(doc[k]) for k in ("train", "val", "test")]
    assert sum(map(len, sets)) == doc["n"] == 130831 == len(set.union(*sets))
    assert len(sets[0]) == int(0.8 * doc["n"]) and len(sets[1]) == int(0.1 * doc["n"])


def test_rmd17_tiny_splits_and_stereo_smiles(tmp_path):
    mini_rmd17.generate(tmp_path / "r", n_train=3, n_val=1, n_test=2, stride=1, equil=1, prerelax_steps=5,
                        molecules=["ethanol", "malonaldehyde"], progress=False)
    splits = _read(tmp_path / "r")
    assert [len(splits[s]) for s in common.SPLITS] == [6, 2, 4]
    _check_frames([f for s in splits.values() for f in s], "mini-rmd17")
    smiles = {f.info["molecule"]: f.info["smiles"] for f in splits["train"]}
    assert smiles["malonaldehyde"] == mini_rmd17.MOLECULES["malonaldehyde"] == "O=C/C=C\\O"
    assert {f.info["traj"] for f in splits["test"]} == {"B"} and {f.info["traj"] for f in splits["val"]} == {"A"}


def test_md22_tiny(tmp_path):
    meta = mini_md22.generate(tmp_path / "m", n_train=1, n_val=1, n_test=1, stride=1, equil=1, prerelax_steps=2,
                              molecules=["Ac-Ala3-NHMe"], progress=False)
    assert meta["frames"] == 3
    frames = [f for s in _read(tmp_path / "m").values() for f in s]
    _check_frames(frames, "mini-md22")
    assert len(frames[0]) == 42


def test_matbench_tiny(tmp_path):
    mini_matbench.generate(tmp_path / "mb", n=4, chunk_size=2, progress=False)
    frames = [f for s in _read(tmp_path / "mb").values() for f in s]
    _check_frames(frames, "mini-matbench", stress=True)
    for f in frames:
        assert 2 <= len(f) <= 16 and f.pbc.all() and len(set(f.get_chemical_symbols())) >= 2
        assert 0 < f.info["bulk_modulus"] < 500 and abs(f.info["formation_energy_per_atom"]) < 1.0
        assert np.isfinite(f.info["mixing_energy_per_atom"])
    folds = json.loads((tmp_path / "mb" / "folds.json").read_text())["folds"]
    assert sorted(i for fold in folds for i in fold) == list(range(4))


def test_committed_manifest_matches_files():
    manifest = MINI / "MANIFEST.json"
    if not manifest.exists():
        pytest.fail("data/mini/MANIFEST.json missing: run python -m training.datagen.all --out data/mini")
    doc = json.loads(manifest.read_text())
    assert doc["files"]
    for entry in doc["files"]:
        path = MINI / entry["path"]
        assert path.is_file(), entry["path"]
        assert path.stat().st_size == entry["bytes"], entry["path"]
        assert common.sha256(path) == entry["sha256"], entry["path"]
    assert doc["total_bytes"] < 40e6
