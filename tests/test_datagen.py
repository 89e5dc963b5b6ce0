"""Fast checks of the mini-JMP generators (experiments/mini_jmp/datagen) on tiny sizes, and of the committed data/mini
manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from experiments.mini_jmp.datagen import (
    common,
    corpus_v2,
    filters,
    mini_ani1x,
    mini_largemol,
    mini_matbench,
    mini_md22,
    mini_oc20,
    mini_rmd17,
    mini_t1x,
)

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "data" / "mini"
MINI_V2 = ROOT / "data" / "mini_v2"


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
    from experiments.mini_jmp.datagen.qm9_split import train_ids

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
        pytest.fail("data/mini/MANIFEST.json missing: run python -m experiments.mini_jmp.datagen.all --out data/mini")
    doc = json.loads(manifest.read_text())
    assert doc["files"]
    for entry in doc["files"]:
        path = MINI / entry["path"]
        assert path.is_file(), entry["path"]
        assert path.stat().st_size == entry["bytes"], entry["path"]
        assert common.sha256(path) == entry["sha256"], entry["path"]
    assert doc["total_bytes"] < 40e6


# ---- corpus v2 (issue 12): filters, larger molecules, assembly, committed manifest ----

def _frame(symbols="OH2", fmax=1.0, **info):
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = Atoms(symbols, positions=np.arange(3 * len(Atoms(symbols))).reshape(-1, 3) * 0.7)
    forces = np.zeros((len(atoms), 3))
    forces[-1, 1] = fmax
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0, forces=forces)
    atoms.info.update(info)
    return atoms


def test_benchmark_filter_rejects_benchmarks_and_analogues():
    bench = filters.BenchmarkFilter()
    assert {"rmd17:azobenzene", "rmd17:paracetamol", "md22:stachyose", "md22:DHA"} <= set(bench.references)
    assert len([k for k in bench.references if k.startswith("rmd17:")]) == 10
    for name, smiles in bench.references.items():  # the benchmark molecules themselves, any SMILES spelling
        assert bench.nearest(filters.canonical_smiles(smiles)) == (name, pytest.approx(1.0)) or \
            bench.nearest(smiles)[1] == pytest.approx(1.0)
    # close analogues: aspirin's ethyl ester, methylated paracetamol / azobenzene, propanol (ethanol + CH2)
    for smiles, near in [("CCOC(=O)c1ccccc1OC(C)=O", "rmd17:aspirin"), ("CC(=O)Nc1ccc(OC)cc1", "rmd17:paracetamol"),
                         ("c1ccc(cc1)N=Nc1ccc(C)cc1", "rmd17:azobenzene"), ("CCCO", "rmd17:ethanol")]:
        name, sim = bench.nearest(smiles)
        assert name == near and sim >= 0.5 and bench.is_analogue(smiles), smiles
    for smiles in ["CC(C)O", "OC1CC1", "CC(=O)NC1CCN(CC1)C(=O)OCC", "c1ccc2ccccc2c1C"]:
        assert bench.nearest(smiles)[1] < 0.5 and not bench.is_analogue(smiles), smiles
    with pytest.raises(ValueError, match="cannot parse"):
        bench.nearest("not a smiles((")


def test_force_filter_and_clean_frames():
    assert filters.max_force(_frame(fmax=25.0)) == pytest.approx(25.0)
    assert filters.force_ok(_frame(fmax=19.9)) and not filters.force_ok(_frame(fmax=20.1))
    frames = [_frame(fmax=5.0, smiles="CC(C)O"), _frame(fmax=25.0, smiles="CC(C)O"),
              _frame(fmax=2500.0), _frame(fmax=1.0, smiles="CCO"),  # ethanol itself: a benchmark molecule
              _frame(fmax=1.0, smiles="CCCC", qm9_index=1), _frame(fmax=3.0, smiles="CCCC", qm9_index=2)]
    kept, stats = corpus_v2.clean_frames(frames, filters.BenchmarkFilter(), qm9_train={2})
    assert [filters.max_force(f) for f in kept] == [5.0, 3.0]
    assert stats.dropped == {"force": 2, "benchmark_analogue": 1, "qm9_not_train": 1} and stats.kept == 2
    assert stats.max_force == pytest.approx(5.0)
    with pytest.raises(ValueError, match="no forces"):
        from ase import Atoms

        filters.max_force(Atoms("H"))


def test_largemol_candidates_filters_and_tiny_generation(tmp_path):
    src = tmp_path / "list.smi"
    good = "CC(=O)NC1CCN(CC1)C(=O)OCC"  # 15 heavy atoms, C H N O
    src.write_text("\n".join([
        f"{good} ok", "CCOC(=O)c1ccccc1OC(C)=O aspirin_analogue", "CCO too_small", "CSc1ccc(cc1)C(=O)OCCCC sulfur",
        "CCCCCCCCCC[NH3+] charged", "CCCCCCCCCCO.O two_fragments", "C" * 21 + " too_large",
        "OCCCCCCCCCCN qm9_test_stand_in", "xx(( unparsable", f"{good} duplicate"]) + "\n")
    qm9_test = frozenset({"NCCCCCCCCCCO"})
    pool, counts = mini_largemol.candidate_smiles(sources=[src], qm9_test=qm9_test)
    assert pool == [filters.canonical_smiles(good)]
    assert counts == {"lines": 10, "unparsable": 1, "benchmark_analogue": 1, "size": 2, "elements": 1, "charge": 1,
                      "fragments": 1, "qm9_test": 1, "duplicate": 1, "kept": 1}
    meta = mini_largemol.generate(tmp_path / "lm", n=1, n_conf=1, md_steps=2, md_stride=1, sources=[src],
                                  qm9_test=qm9_test, progress=False)
    frames = [f for s in _read(tmp_path / "lm").values() for f in s]
    _check_frames(frames, "mini-largemol")
    assert meta["frames"] == len(frames) == 3 and {f.info["sampling"] for f in frames} == {"rattle", "md"}
    assert all(f.info["heavy_atoms"] == 15 and f.info["smiles"] == pool[0] for f in frames)
    assert max(filters.max_force(f) for f in frames) <= filters.FMAX


def test_corpus_v2_assemble_filters_and_tags_sources(tmp_path):
    v1, parts = tmp_path / "v1", tmp_path / "parts"
    for folder, frames in [(v1 / "a", [_frame(fmax=1.0, smiles=common.extxyz_safe("C/C=C\\CCO")), _frame(fmax=30.0)]),
                           (parts / "b", [_frame(fmax=2.0, smiles="CCO"), _frame(fmax=4.0)])]:
        folder.mkdir(parents=True)
        common.write_extxyz_gz(folder / "train.extxyz.gz", frames)
        common.write_json(folder / "meta.json", {"dataset": folder.name, "command": f"make {folder.name}",
                                                 "method": "test", "wall_s": 1.5, "frames": 2, "units": 2})
    ds = corpus_v2.Dataset("x", ("v1:a", "part:b"), "test")
    doc = corpus_v2.assemble(tmp_path / "out", v1, parts, datasets=(ds,), split_file=_split_file())
    frames = common.read_extxyz_gz(tmp_path / "out" / "x" / "train.extxyz.gz")
    assert [f.info["source"] for f in frames] == ["v1:a", "part:b"]
    assert frames[0].info["smiles"] == "C/C=C\\CCO"  # stereo backslash survives the second write
    entry = doc["datasets"]["x"]
    assert entry["frames"] == 2 and entry["dropped"] == {"force": 1, "benchmark_analogue": 1, "qm9_not_train": 0}
    assert entry["max_force_eV_per_A"] == pytest.approx(4.0) and entry["generation_wall_s"] == 3.0
    assert doc["files"][0]["sha256"] == common.sha256(tmp_path / "out" / "x" / "train.extxyz.gz")


def test_committed_corpus_v2_manifest_matches_files():
    manifest = MINI_V2 / "MANIFEST.json"
    if not manifest.exists():
        pytest.fail("data/mini_v2/MANIFEST.json missing: run "
                    "python -m experiments.mini_jmp.datagen.corpus_v2 --generate")
    doc = json.loads(manifest.read_text())
    assert doc["files"] and doc["total_bytes"] < 40e6
    for entry in doc["files"]:
        path = MINI_V2 / entry["path"]
        assert path.is_file(), entry["path"]
        assert path.stat().st_size == entry["bytes"] and common.sha256(path) == entry["sha256"], entry["path"]
    bench = filters.BenchmarkFilter()
    for name, entry in doc["datasets"].items():
        assert entry["max_force_eV_per_A"] <= filters.FMAX
        val = MINI_V2 / name / "val.extxyz.gz"  # the small split: checked frame by frame
        frames = common.read_extxyz_gz(val)
        assert len(frames) == entry["splits"]["val"]["kept"]
        assert max(filters.max_force(f) for f in frames) <= filters.FMAX
        assert not any(bench.is_analogue(s) for s in {f.info["smiles"] for f in frames if "smiles" in f.info})
