"""The training stack end to end on tiny generated data: pre-train on two datasets, resume after a kill with the
same result, fine-tune (pre-trained and from scratch), evaluate, publish (dry run), and its error handling."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lightning")

from ase.build import bulk, fcc111, molecule  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402
from ase.io import write  # noqa: E402

from training.batching import TemperatureSampler, temperature_weights  # noqa: E402
from training.config import ConfigError, DatasetConfig, RunConfig, load_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _label(atoms):
    atoms.calc = EMT()
    atoms.get_potential_energy()
    atoms.get_forces()
    return atoms


def _frames(kind: str, n: int, seed: int):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        if kind == "slab":
            a = fcc111("Cu", (2, 2, 2), vacuum=4.0)
            a.set_tags([1] * 4 + [0] * 4)
        elif kind == "bulk":
            a = bulk(["Cu", "Ni", "Pd"][i % 3], cubic=False) * (2, 1, 1)
            a.set_cell(a.cell * (1 + 0.02 * rng.standard_normal()), scale_atoms=True)
        else:
            a = molecule("CH4")
        a.rattle(0.08, seed=int(rng.integers(1 << 30)))
        out.append(_label(a))
        if kind == "bulk":
            out[-1].get_stress()
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    write(d / "slabs.extxyz", _frames("slab", 24, 0))
    write(d / "bulk.extxyz", _frames("bulk", 24, 1))
    write(d / "bulk_val.extxyz", _frames("bulk", 6, 2))
    cfg = d / "pre.yaml"
    cfg.write_text(
        "name: tiny-pre\nout: OUT\nseed: 0\n"
        "model: {preset: tiny, overrides: {edge_dropout: 0.1}, fit_scale_factors_batches: 2}\n"
        "datasets:\n"
        f"  - {{name: slabs, train: {d / 'slabs.extxyz'}, graph: {{cutoff: 4.5, max_neighbors: 12}}}}\n"
        f"  - {{name: bulk, train: {d / 'bulk.extxyz'}, graph: {{cutoff: 4.5, max_neighbors: 12}}}}\n"
        "sampling: {temperature: 2.0}\noptim: {lr: 1.0e-3, warmup_steps: 4}\n"
        "trainer: {max_epochs: 2, batch_size: 4, checkpoint_every_n_steps: 2, progress: false, threads: 1}\n")
    return d


def _run(args, **kw):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, **kw)


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_temperature_sampling_is_deterministic_shardable_and_resumable():
    w = temperature_weights([100, 1], 2.0)
    assert np.allclose(w, np.array([10, 1]) / 11)
    s = TemperatureSampler([30, 10], temperature=2.0, seed=3)
    s.set_epoch(1)
    a = list(s)
    assert a == list(s) and len(a) == 40 and set(a) <= set(range(40))
    s.set_epoch(2)
    assert list(s) != a
    r0 = TemperatureSampler([30, 10], seed=3, num_replicas=2, rank=0)
    r1 = TemperatureSampler([30, 10], seed=3, num_replicas=2, rank=1)
    for r in (r0, r1):
        r.set_epoch(1)
    assert sorted(list(r0) + list(r1)) == sorted(a)
    s.set_epoch(1)
    s.skip(12, epoch=1)
    assert list(s) == a[12:]
    assert list(s) == a  # the skip applies once


def test_sample_weight_multiplies_the_temperature_probabilities():
    assert np.allclose(temperature_weights([100, 1], 2.0, [1.0, 10.0]), [0.5, 0.5])
    s = TemperatureSampler([400, 400], temperature=1.0, samples_per_epoch=4000, seed=0, multipliers=[3.0, 1.0])
    s.set_epoch(0)
    share = np.mean(np.asarray(list(s)) < 400)
    assert 0.72 < share < 0.78  # 3:1 (a draw of 4,000: sd 0.007)
    with pytest.raises(ConfigError, match=r"datasets\[a\].sample_weight"):
        RunConfig.from_dict({"name": "x", "out": "y", "datasets": [{"name": "a", "train": "t.xyz",
                                                                   "sample_weight": 0}]})


def test_configs_of_older_runs_name_the_recomputation_threshold_in_elements():
    """Run configs written before 2026-12-06 (every committed runs/*/config.json) say
    trainer.recompute_min_elements (padded elements); they still load, as slots = elements / 8."""
    base = {"name": "x", "out": "y", "datasets": [{"name": "a", "train": "t.xyz"}]}
    old = RunConfig.from_dict({**base, "trainer": {"recompute_min_elements": 2**26}})
    assert old.trainer.recompute_min_slots == 2**23
    new = RunConfig.from_dict({**base, "trainer": {"recompute_min_slots": 1000}})
    assert new.trainer.recompute_min_slots == 1000 and RunConfig.from_dict(base).trainer.recompute_min_slots == 2**23


def test_config_errors_name_the_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\nout: y\ndatasets: [{name: a, train: t.xyz, forse_weight: 3}]\n")
    with pytest.raises(ConfigError, match="datasets.0.forse_weight"):
        load_config(p)
    with pytest.raises(ConfigError, match="missing key"):
        RunConfig.from_dict({"name": "x", "datasets": [{"name": "a"}]})


@pytest.mark.slow
def test_pretrain_killed_and_resumed_matches_uninterrupted(data, tmp_path):
    cfg = str(data / "pre.yaml")
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    r = _run(["-m", "training.pretrain", cfg, f"out={ref}"], timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    p = subprocess.Popen([sys.executable, "-m", "training.pretrain", cfg, f"out={cut}"], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = cut / "checkpoints" / "last.ckpt"
    t0 = time.time()
    while not last.exists() and p.poll() is None and time.time() - t0 < 200:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)  # killed somewhere after its first checkpoint
    p.wait()
    r = _run(["-m", "training.pretrain", cfg, f"out={cut}"], timeout=300)
    assert r.returncode == 2 and "--resume" in r.stderr  # refuses to overwrite a run
    r = _run(["-m", "training.pretrain", cfg, f"out={cut}", "--resume"], timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = _rows(ref / "metrics.csv"), _rows(cut / "metrics.csv")
    assert len(a) == len(b) == 2
    for x, y in zip(a, b):
        assert float(x["val/loss"]) == pytest.approx(float(y["val/loss"]), rel=1e-6)
        assert float(x["train/loss"]) == pytest.approx(float(y["train/loss"]), rel=1e-6)
    from safetensors.torch import load_file

    wa, wb = load_file(ref / "model" / "model.safetensors"), load_file(cut / "model" / "model.safetensors")
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-6
    card = json.loads((ref / "model" / "config.json").read_text())
    assert [h["name"] for h in card["heads"]] == ["slabs", "bulk"]
    assert (ref / "learning_curve.png").stat().st_size > 1000


@pytest.fixture(scope="module")
def pretrained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("pre") / "run"
    from training.pretrain import main

    assert main([str(data / "pre.yaml"), f"out={out}", "trainer.max_epochs=1"]) == 0
    return out / "model"


@pytest.mark.parametrize("scratch", [False, True])
def test_finetune_and_load_in_calculator(data, pretrained, tmp_path, scratch):
    from jmp_calc import JMPCalculator
    from training.finetune import main

    out = tmp_path / ("scratch" if scratch else "ft")
    args = ["--base", str(pretrained), "--train", str(data / "bulk.extxyz"), "--valid", str(data / "bulk_val.extxyz"),
            "--test", str(data / "bulk_val.extxyz"), "--out", str(out), "--targets", "energy,forces,stress",
            "--epochs", "2", "--batch-size", "6", "--no-progress", "--threads", "1", "--lr", "1e-3"]
    assert main(args + (["--from-scratch"] if scratch else [])) == 0
    rows = _rows(out / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    for key in ("train/energy/forces", "val/energy/forces", "val/energy/energy", "val/energy/stress"):
        assert np.isfinite(float(rows[-1][key]))
    assert (out / "learning_curve.png").stat().st_size > 1000
    cfg = json.loads((out / "model" / "config.json").read_text())
    assert cfg["card"]["trained_from"] == ("scratch" if scratch else f"fine-tuned from {pretrained}")
    assert cfg["card"]["forces"] == {"energy": "conservative"} and cfg["card"]["default_head"] == "energy"
    # dropout from finetune's own defaults, not the base's edge_dropout 0.1; the chosen values are in the run config
    assert json.loads((pretrained / "config.json").read_text())["backbone"]["edge_dropout"] == 0.1
    assert cfg["backbone"]["edge_dropout"] == 0.0 and cfg["backbone"]["dropout"] == 0.0
    run = json.loads((out / "config.json").read_text())
    assert run["model"]["overrides"] == {"edge_dropout": 0.0, "dropout": 0.0}
    assert run["optim"]["ema_decay"] is None and run["optim"]["layer_decay"] is None
    atoms = _frames("bulk", 1, 9)[0]
    ref_e = atoms.get_potential_energy()
    atoms.calc = JMPCalculator(out / "model")
    e = atoms.get_potential_energy()
    assert np.isfinite(e) and atoms.get_stress().shape == (6,)
    assert abs(e - ref_e) / len(atoms) < 5.0  # atom references put it in the right range even after 2 epochs
    test = json.loads((out / "test_metrics.json").read_text())
    assert set(test) >= {"energy", "forces", "stress"}


def test_finetune_transfers_the_backbone(pretrained):
    from jmp_calc.io import load_model_dir
    from jmp_calc.model import JMPModel
    from training.base_model import transfer_backbone

    base = load_model_dir(pretrained)
    new = JMPModel(base.config, base.heads[:1])
    n, fresh = transfer_backbone(base, new)
    assert n > 50 and not fresh
    for k, v in base.state_dict().items():
        if k.startswith("backbone."):
            assert (new.state_dict()[k] == v).all(), k


def test_evaluate_and_publish_dry_run(data, pretrained, tmp_path):
    r = _run(["-m", "training.evaluate", str(pretrained), str(data / "bulk_val.extxyz"), "--head", "bulk",
              "--out", str(tmp_path / "ev")], timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "energy" in r.stdout and (tmp_path / "ev" / "parity.png").stat().st_size > 1000
    from training.publish import main

    stage = tmp_path / "stage"
    assert main([str(pretrained), "--repo-id", "someone/tiny-pre", "--dry-run", str(stage)]) == 0
    assert sorted(p.name for p in stage.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert "license:" in (stage / "README.md").read_text()


def test_evaluate_leaves_out_frames_above_max_abs_force(data, pretrained, tmp_path, capsys):
    """``training.evaluate --max-abs-force`` scores only the frames a dataset's ``max_abs_force`` would train on."""
    from ase.io import read

    from training.evaluate import main

    frames = read(data / "bulk_val.extxyz", ":")
    fmax = sorted(float(np.linalg.norm(a.get_forces(), axis=1).max()) for a in frames)
    cut = 0.5 * (fmax[2] + fmax[3])  # three frames above
    assert main([str(pretrained), str(data / "bulk_val.extxyz"), "--head", "bulk", "--out", str(tmp_path / "ev"),
                 "--max-abs-force", str(cut)]) == 0
    assert f"3 of {len(frames)} structures left out" in capsys.readouterr().out
    report = json.loads((tmp_path / "ev" / "test_metrics.json").read_text())
    assert report["energy"]["n"] == len(frames) - 3


def test_publish_uploads_with_the_hub_api(pretrained):
    from training.publish import publish

    calls = {}

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            calls["create"] = repo_id

        def upload_folder(self, folder_path, repo_id, **kw):
            calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            return type("Info", (), {"oid": "abc123"})()

    entry = publish(pretrained, "org/tiny", api=FakeApi())
    assert calls == {"create": "org/tiny", "files": ["README.md", "config.json", "model.safetensors"]}
    assert entry["revision"] == "abc123" and len(entry["sha256"]) == 64


def test_bad_runs_fail_early_with_one_line(data, tmp_path):
    from training.finetune import main

    blocker = tmp_path / "file"
    blocker.write_text("x")
    base = ["--base", "jmp-mini-emt", "--train", str(data / "bulk.extxyz"), "--epochs", "1", "--no-progress"]
    assert main(base + ["--out", str(blocker / "out")]) == 2  # unwritable output: before any training
    bad = tmp_path / "bad.extxyz"
    frames = _frames("bulk", 8, 5)
    frames[3].calc.results["energy"] = float("inf")
    write(bad, frames)
    out = tmp_path / "nan"
    code = main(["--base", "jmp-mini-emt", "--train", str(bad), "--valid", str(data / "bulk_val.extxyz"),
                 "--out", str(out), "--epochs", "1", "--batch-size", "8", "--no-progress"])
    assert code == 2
    assert main(["--task", "qm9-U1", "--data-dir", str(tmp_path), "--base", "jmp-s", "--out", str(out)]) == 2


def test_finetune_is_a_run_config_that_pretrain_repeats(data, pretrained, tmp_path):
    """training.finetune only maps its flags onto a RunConfig: the OUT/config.json it writes, run by
    training.pretrain, builds the same model from the same data and gives the same learning curve."""
    from training.finetune import main
    from training.pretrain import main as pretrain

    out = tmp_path / "ft"
    assert main(["--base", str(pretrained), "--train", str(data / "bulk.extxyz"), "--valid",
                 str(data / "bulk_val.extxyz"), "--out", str(out), "--epochs", "2", "--batch-size", "6",
                 "--no-progress", "--threads", "1", "--max-train", "20"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["init_from"] == str(pretrained) and cfg["model"]["copy_heads"] is False
    assert cfg["datasets"][0]["max_train"] == 20 and cfg["optim"]["warmup_epochs"] == pytest.approx(0.1)
    again = tmp_path / "again"
    assert pretrain([str(out / "config.json"), f"out={again}"]) == 0
    first, second = _rows(out / "metrics.csv"), _rows(again / "metrics.csv")
    assert [r["step"] for r in first] == [r["step"] for r in second]
    for a, b in zip(first, second):
        for k in ("train/loss", "val/loss", "val/energy/forces"):
            assert float(a[k]) == pytest.approx(float(b[k]), rel=1e-6), k
    card = json.loads((again / "model" / "config.json").read_text())["card"]
    assert card["default_head"] == "energy" and card["trained_from"] == f"fine-tuned from {pretrained}"


def test_task_presets_are_dataset_configs(tmp_path):
    """A --task preset is a DatasetConfig (the one task record) plus run settings; its splits come from the
    shared split function: rMD17 950 / 50 / rest, MatBench 5 folds."""
    from training.splits import kfold_indices, train_val_rest
    from training.tasks import get_task

    d = get_task("rmd17-aspirin").dataset_config(tmp_path)
    assert d.train == str(tmp_path / "rmd17/npz_data/rmd17_aspirin.npz") and d.targets == ("energy", "forces")
    assert (d.train_size, d.val_size, d.forces, d.head_name("energy")) == (950, 50, "conservative", "energy")
    mb = get_task("matbench-mp_gap").dataset_config(tmp_path, fold=3)
    assert (mb.kfold, mb.fold, mb.energy, mb.targets, mb.head_name("gap pbe")) == (5, 3, False, ("gap pbe",),
                                                                                    "gap pbe")
    tr, va, rest = train_val_rest(1000, n_val=50, n_train=950, seed=1)
    assert len(tr) == 950 and len(va) == 50 and not len(rest) and not set(tr) & set(va)
    folds = [kfold_indices(100, 5, f, 18012019)[1] for f in range(5)]
    assert sorted(np.concatenate(folds).tolist()) == list(range(100))
    with pytest.raises(ConfigError, match="cannot split 10 structures into 950 train"):
        train_val_rest(10, n_val=50, n_train=950)
    with pytest.raises(ConfigError, match="forces and stress are derived from the energy head"):
        DatasetConfig(name="x", energy=False)


def test_task_preset_end_to_end(tmp_path):
    """--task: the preset's dataset (file under --data-dir, 950/50/rest split here overridden to 16/4/rest with
    --set), the shared split function, and the test set = the rest, evaluated after training."""
    from ase.build import molecule

    from training.finetune import main

    rng = np.random.default_rng(0)
    mol = molecule("CH3CH2OH")
    coords = mol.positions[None] + 0.05 * rng.standard_normal((28, len(mol), 3))
    k = 5.0  # a harmonic well around the equilibrium: energy in kcal/mol, forces in kcal/mol/A
    disp = coords - mol.positions[None]
    path = tmp_path / "rmd17" / "npz_data" / "rmd17_ethanol.npz"
    path.parent.mkdir(parents=True)
    np.savez(path, nuclear_charges=mol.numbers, coords=coords, energies=0.5 * k * (disp**2).sum((1, 2)),
             forces=-k * disp)
    out = tmp_path / "run"
    assert main(["--task", "rmd17-ethanol", "--data-dir", str(tmp_path), "--base", "jmp-mini-s", "--out", str(out),
                 "--epochs", "1", "--no-progress", "--threads", "1",
                 "--set", "datasets.0.train_size=16", "datasets.0.val_size=4"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["datasets"][0]["train"] == str(path) and cfg["trainer"]["batch_size"] == 4  # the preset's
    card = json.loads((out / "model" / "config.json").read_text())["card"]
    assert (card["n_train"], card["n_valid"], card["targets"]) == (16, 4, ["energy", "forces"])
    test = json.loads((out / "test_metrics.json").read_text())
    assert test["forces"]["n"] == 8 * len(mol) * 3  # the 8 frames neither trained on nor validated


def test_forty_task_presets():
    from training.tasks import TASKS

    fams = {}
    for t in TASKS.values():
        fams[t.family] = fams.get(t.family, 0) + 1
    assert fams == {"qm9": 12, "rmd17": 10, "md22": 7, "spice": 2, "matbench": 8, "qmof": 1}


def test_pretrain_init_from_a_base_then_ship_with_head_rules(data, pretrained, tmp_path):
    """model.init_from: a conservative two-head run starting from a direct pre-trained model (backbone and the
    energy MLPs of the mapped heads copied); training.ship merges the card, measures each head, routes by rules."""
    from jmp_calc import JMPCalculator
    from jmp_calc.io import load_model_dir
    from jmp_calc.routing import HeadRules
    from training.pretrain import main

    cfg = tmp_path / "gen.yaml"
    cfg.write_text(
        "name: gen\nout: OUT\nseed: 0\n"
        f"model: {{init_from: {pretrained}, init_heads: {{metals: bulk, molecules: slabs}}}}\n"
        "datasets:\n"
        f"  - {{name: metals, train: {data / 'bulk.extxyz'}, graph: {{cutoff: 4.5, max_neighbors: 12}}, "
        "forces: conservative, stress: true}\n"
        f"  - {{name: molecules, train: {data / 'slabs.extxyz'}, graph: {{cutoff: 4.5, max_neighbors: 12}}, "
        "forces: conservative}\n"
        "optim: {lr: 1.0e-4, warmup_steps: 1}\n"
        "trainer: {max_epochs: 1, max_steps: 2, batch_size: 4, progress: false, threads: 1}\n")
    out = tmp_path / "run"
    base = load_model_dir(pretrained)
    assert main([str(cfg), f"out={out}"]) == 0
    model = load_model_dir(out / "model")
    assert model.head_names == ["metals", "molecules"] and not model.config.direct_forces
    assert model.card.trained_from == f"pre-training continued from {pretrained}"
    # two steps at lr 1e-4 move the weights a little; a fresh init would be far away
    b, m = base.state_dict(), model.state_dict()
    k = "backbone.int_blocks.0.atom_update.layers.0.linear.weight"
    k = k if k in m else next(x for x in m if x.startswith("backbone.") and m[x].ndim == 2)
    assert (m[k] - b[k]).abs().max() < 0.05 * b[k].abs().max()
    card = tmp_path / "card.yaml"
    card.write_text("name: gen\npretraining: false\ntargets: [energy, forces, stress]\n"
                    "head_rules: [{head: molecules, only_elements: [1, 6]}, {head: metals}]\n"
                    "readme: |\n  # gen\n\n  {test_table}\n")
    r = _run(["-m", "training.ship", str(out / "model"), str(tmp_path / "shipped"), "--card", str(card),
              "--test", f"metals={data / 'bulk_val.extxyz'}"], timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    shipped = json.loads((tmp_path / "shipped" / "config.json").read_text())["card"]
    assert set(shipped["test_metrics"]["metals"]) >= {"energy", "forces", "stress"}
    assert "| metals |" in (tmp_path / "shipped" / "README.md").read_text()
    calc = JMPCalculator(tmp_path / "shipped")  # no head= needed: the card routes
    assert isinstance(calc.potential.selector, HeadRules)
    assert calc.potential.route(molecule("CH4")) == "molecules" and calc.potential.route(bulk("Cu")) == "metals"
    bad = _run(["-m", "training.ship", str(out / "model"), str(tmp_path / "nope"), "--card", str(card),
                "--test", "oc20=x.xyz"], timeout=120)
    assert bad.returncode == 2 and "oc20=x.xyz" in bad.stderr and not (tmp_path / "nope").exists()


def test_finetune_exports_and_tests_the_best_validation_weights(data, tmp_path, monkeypatch, capsys):
    """Validation made to look worse after epoch 0: the exported model, its card and the test metrics are those of
    epoch 0's checkpoint, not of the last weights."""
    import torch
    from safetensors.torch import load_file

    from training import module
    from training.finetune import main

    on_val_end = module.JMPTrainModule.on_validation_epoch_end

    def later_epochs_look_worse(self):
        log = self.log

        def shifted(name, value, **kw):
            return log(name, value + 100.0 * self.current_epoch if name == "val_loss" else value, **kw)

        self.log = shifted
        try:
            on_val_end(self)
        finally:
            del self.log

    monkeypatch.setattr(module.JMPTrainModule, "on_validation_epoch_end", later_epochs_look_worse)
    out = tmp_path / "best"
    args = ["--base", "jmp-mini-emt", "--train", str(data / "bulk.extxyz"), "--valid", str(data / "bulk_val.extxyz"),
            "--test", str(data / "bulk_val.extxyz"), "--out", str(out), "--epochs", "2", "--batch-size", "8",
            "--no-progress", "--threads", "1", "--lr", "1e-3", "--forces", "direct", "--ema", "0.5"]
    assert main(args) == 0
    assert "(weights of the best validation: epoch 0, step 3)" in capsys.readouterr().out
    exported = load_file(out / "model" / "model.safetensors")
    # validation (and so the choice) used the EMA weights: those of the best checkpoint are exported
    best = torch.load(out / "checkpoints" / "step3.ckpt", weights_only=True)["callbacks"]["EMA"]["shadow"]
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]["EMA"]["shadow"]
    moved = 0
    for k, v in exported.items():
        assert torch.equal(v, best[k].to(v.dtype)), k
        moved += not torch.equal(v, last[k].to(v.dtype))
    assert moved > 10  # the last weights differ: another epoch was trained
    card = json.loads((out / "model" / "config.json").read_text())["card"]
    rows = _rows(out / "metrics.csv")
    assert card["best_epoch"] == 0 and "weights of the best validation: epoch 0, step 3" in card["notes"]
    assert card["valid_metrics"]["val/loss"] == pytest.approx(float(rows[0]["val/loss"]))
    test = json.loads((out / "test_metrics.json").read_text())
    assert test["weights"] == {"weights": "best validation", "epoch": 0, "step": 3, "checkpoint": "step3.ckpt"}
    # the test metrics are of the epoch-0 weights: validation on the same frames gave the same force MAE
    assert test["forces"]["mae"] == pytest.approx(float(rows[0]["val/energy/forces"]), rel=1e-4)
    # any checkpoint's weights can be exported as a model (experiments.mini_jmp.checkpoint_model): here the last
    from experiments.mini_jmp.checkpoint_model import export_checkpoint

    info = export_checkpoint(out, out / "checkpoints" / "last.ckpt", tmp_path / "last_model")
    assert info["weights"] == "EMA weights" and info["step"] > 3
    for k, v in load_file(tmp_path / "last_model" / "model.safetensors").items():
        assert torch.equal(v, last[k].to(v.dtype)), k
    notes = json.loads((tmp_path / "last_model" / "config.json").read_text())["card"]["notes"]
    assert not any(n.startswith("weights of the best validation") for n in notes)
    assert f"step {info['step']}" in notes[-1]


def test_max_abs_force_drops_unphysical_frames_before_the_statistics(tmp_path):
    from training.build import dataset_stats
    from training.config import DatasetConfig
    from training.splits import load_splits

    frames = _frames("bulk", 12, 3)
    for i in (2, 7):  # a failed SCF: one atom with an absurd force (kept finite, so the reader accepts it)
        frames[i].calc.results["forces"][1] = [0.0, 900.0, 0.0]
    write(tmp_path / "t.extxyz", frames)
    write(tmp_path / "v.extxyz", frames[:4])
    logged = []
    d = DatasetConfig(name="bulk", train=str(tmp_path / "t.extxyz"), val=str(tmp_path / "v.extxyz"),
                      max_abs_force=20.0)
    sp = load_splits(d, 0, log=logged.append)
    train, val = sp.train, sp.val
    assert len(train) == 10 and len(val) == 3
    assert all(np.abs(train[i].forces).max() < 20 for i in range(len(train)))
    assert logged[0].startswith("dataset bulk train: dropped 2 of 12 frames with |F| > 20 eV/A (e.g. ")
    assert f"{tmp_path / 't.extxyz'}:2" in logged[0] and "dropped 1 of 4" in logged[1]
    raw_train = load_splits(DatasetConfig(name="bulk", train=str(tmp_path / "t.extxyz"),
                                          val=str(tmp_path / "v.extxyz")), 0).train
    clean, raw = dataset_stats(d, train)["force_rms"], dataset_stats(d, raw_train)["force_rms"]
    assert raw > 20 * clean  # two atoms of 96 dominated the force normalisation
    with pytest.raises(ConfigError, match="max_abs_force must be a positive number"):
        DatasetConfig(name="x", max_abs_force=-1)


def test_elements_missing_from_the_training_split_are_named(tmp_path):
    from types import SimpleNamespace

    from training.build import _warn_unreferenced_elements, dataset_stats
    from training.splits import load_splits

    frames = _frames("bulk", 9, 4)  # Cu, Ni, Pd in turn
    write(tmp_path / "t.extxyz", [a for a in frames if a.get_chemical_symbols()[0] != "Pd"])
    write(tmp_path / "v.extxyz", frames)
    d = DatasetConfig(name="bulk", train=str(tmp_path / "t.extxyz"), val=str(tmp_path / "v.extxyz"))
    sp = load_splits(d, 0)
    logged = []
    _warn_unreferenced_elements(d, dataset_stats(d, sp.train), sp, logged.append)
    assert logged == ["warning: dataset bulk: its validation set has elements the training split lacks (Z = 46); "
                      "no reference energy is fitted for them, so energies of those structures will be off"]
    logged.clear()
    full = SimpleNamespace(val=sp.val, test=None)
    _warn_unreferenced_elements(d, dataset_stats(d, sp.val), full, logged.append)
    assert logged == []


def test_slab_first_datasets_keep_periodic_images(tmp_path):
    """A dataset of slabs (periodic in x, y) and bulk cells whose first frame is a slab, fine-tuned from a base whose
    heads include a molecular one (pbc: false): every structure keeps its periodic images. The first frame's
    ``all(pbc)`` used to pick the molecular rule and train slabs and bulk cells as open clusters."""
    from jmp_calc.config import GraphConfig, HeadConfig, tiny
    from jmp_calc.model import JMPModel
    from training.base_model import is_periodic
    from training.build import build_run

    write(tmp_path / "mixed.extxyz", _frames("slab", 4, 0) + _frames("bulk", 4, 1))
    write(tmp_path / "mol.extxyz", _frames("mol", 4, 2))
    mol_rule = GraphConfig(cutoff=4.5, max_neighbors=12, pbc=False)
    for heads in ([HeadConfig(name="mol", graph=mol_rule)],  # a molecular base only
                  [HeadConfig(name="mol", graph=mol_rule), HeadConfig(name="cat", graph=GraphConfig(cutoff=4.5))]):
        base = JMPModel(tiny(), heads)
        for name, periodic in (("mixed", True), ("mol", False)):
            cfg = load_config(_yaml(tmp_path, f"name: x\nout: {tmp_path / 'out'}\nmodel: {{init_from: base}}\n"
                                              f"datasets:\n  - {{name: {name}, train: {tmp_path / name}.extxyz, "
                                              f"val: {tmp_path / name}.extxyz, forces: conservative}}\n"))
            logged = []
            run = build_run(cfg, base=base, log=logged.append)
            assert run.tasks[0].graph.pbc is (None if periodic else False), (len(heads), name)
            assert not any("pbc: false" in line for line in logged)
    assert is_periodic(run.train_sets[0]) is False
    assert is_periodic([_frames("mol", 1, 0)[0], *_frames("slab", 1, 0)]) is True  # any structure, any direction


def _yaml(tmp_path, text: str):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_finetune_flags_for_fixed_atoms_and_outlier_frames():
    from training.finetune import parse, run_config

    base = ["--train", "t.extxyz", "--out", "o", "--from-scratch", "--preset", "tiny"]
    cfg, _ = run_config(parse(base))
    assert cfg.datasets[0].fixed_atom_forces is False and cfg.datasets[0].max_abs_force is None  # JMP's way
    cfg, _ = run_config(parse(base + ["--fixed-atom-forces", "--max-abs-force", "20"]))
    assert cfg.datasets[0].fixed_atom_forces is True and cfg.datasets[0].max_abs_force == 20.0


def test_multi_dataset_card_lists_every_trained_target_and_tests_stress(tmp_path):
    """A run of a stress-trained bulk dataset and a molecule dataset: the exported card lists stress (it used to
    list no targets for a multi-dataset run, so `training.evaluate` and the run's test skipped the stress), and each
    dataset's test asks for its own targets only."""
    from jmp_calc.card import ModelCard
    from jmp_calc.config import HeadConfig, tiny
    from jmp_calc.model import JMPModel
    from training.build import build_run, model_card
    from training.data import read_dataset as read_samples
    from training.evaluate import evaluate_model

    write(tmp_path / "bulk.extxyz", _frames("bulk", 4, 1))
    write(tmp_path / "mol.extxyz", _frames("mol", 4, 2))
    cfg = load_config(_yaml(tmp_path, f"name: x\nout: {tmp_path / 'out'}\nmodel: {{preset: tiny}}\ndatasets:\n"
                                      f"  - {{name: bulk, train: {tmp_path}/bulk.extxyz, val: {tmp_path}/bulk.extxyz, "
                                      f"forces: conservative, stress: true}}\n"
                                      f"  - {{name: mol, train: {tmp_path}/mol.extxyz, val: {tmp_path}/mol.extxyz, "
                                      f"forces: conservative}}\n"))
    run = build_run(cfg, log=lambda *a: None)
    card = model_card(run)
    assert card["targets"] == ["energy", "forces", "stress"]
    model = JMPModel(tiny(), [HeadConfig(name="bulk"), HeadConfig(name="mol")], card=ModelCard.from_dict(card))
    bulk_report = evaluate_model(model, read_samples(tmp_path / "bulk.extxyz"), head="bulk")
    assert bulk_report["stress"]["n"] == 4 * 9
    mol_report = evaluate_model(model, read_samples(tmp_path / "mol.extxyz"), head="mol",
                                targets=cfg.datasets[1].targets)
    assert "stress" not in mol_report and mol_report["forces"]["n"] == 4 * 5 * 3


def test_pretrain_takes_overrides_after_the_flags(tmp_path, capsys):
    """`python -m training.pretrain CONFIG --resume KEY=VALUE` (the order a resumed chunk's command line grows into)
    reaches the config, not argparse's "unrecognized arguments"."""
    from training.pretrain import main

    missing = tmp_path / "run.yaml"
    try:
        rc = main([str(missing), "--resume", "trainer.progress=false"])
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err
    assert rc != 0 and "unrecognized arguments" not in err and "not found" in err


def test_evaluate_never_writes_into_the_installed_package(tmp_path):
    """Without --out, `training.evaluate` writes next to a run's DIR/model, but a registry name or a model shipped
    inside jmp_calc gets ./eval-NAME: the report once landed in jmp_calc/models/test/."""
    from jmp_calc.io import EMBEDDED_DIR
    from training.evaluate import default_out

    shipped = EMBEDDED_DIR / "jmp-mini-general"
    assert shipped.is_dir()
    assert default_out(str(shipped)) == Path("eval-jmp-mini-general")
    assert default_out("jmp-mini-s") == Path("eval-jmp-mini-s")
    run_model = tmp_path / "run" / "model"
    run_model.mkdir(parents=True)
    assert default_out(str(run_model)) == tmp_path / "run" / "test"
