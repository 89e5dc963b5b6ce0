"""Fine-tuning heads started from a pre-training head (training.head_transfer, ``--head-from``): the copied head,
rescaled to the new units with refitted references, predicts what the base head predicts, and ``auto`` finds the
base head that matches the labels."""

from __future__ import annotations

import csv

import numpy as np
import pytest

pytest.importorskip("lightning")

from ase.build import bulk  # noqa: E402
from ase.calculators.singlepoint import SinglePointCalculator  # noqa: E402
from ase.io import write  # noqa: E402
from test_training import data, pretrained  # noqa: E402,F401  (the tiny two-head pre-trained model and its data)

OFFSETS = {28: -1.5, 29: 0.7, 46: -3.2}  # eV per atom added to the labels: the refitted references must absorb them


@pytest.fixture(scope="module")
def base(pretrained):  # noqa: F811
    """test_training's tiny pre-trained model: heads ``slabs`` and ``bulk`` (EMT slabs and bulk cells)."""
    return pretrained


def _labelled_by(model_dir, head, n, seed):
    """Rattled bulk cells labelled by one head of the base (float64, forces -dE/dx as the default fine-tune
    trains), energies shifted by OFFSETS per atom."""
    from jmp_calc import JMPCalculator

    calc = JMPCalculator(model_dir, head=head, dtype="float64", forces="conservative")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):  # 4-atom cells rattled well off the lattice: no neighbour ties at the max_neighbors cut
        a = bulk(["Cu", "Ni", "Pd"][i % 3], cubic=True)
        a.set_cell(a.cell * (1 + 0.02 * rng.standard_normal()), scale_atoms=True)
        a.rattle(0.15, seed=int(rng.integers(1 << 30)))
        a.calc = calc
        e = a.get_potential_energy() + sum(OFFSETS[int(z)] for z in a.numbers)
        f = a.get_forces()
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
        out.append(a)
    return out


def _last_row(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))[-1]


def test_head_from_auto_starts_at_the_matching_base_head(base, tmp_path, capsys):
    from training.finetune import main

    write(tmp_path / "train.extxyz", _labelled_by(base, "slabs", 16, 3))
    write(tmp_path / "val.extxyz", _labelled_by(base, "slabs", 6, 4))
    common = ["--base", str(base), "--train", str(tmp_path / "train.extxyz"), "--valid", str(tmp_path / "val.extxyz"),
              "--epochs", "1", "--batch-size", "4", "--no-progress", "--threads", "1", "--lr", "1e-12"]
    # at a negligible learning rate the fine-tuned model is the copied head: it predicts the base head's forces,
    # and the references fitted to its zero-shot energies absorb the per-element offsets of the labels
    assert main([*common, "--out", str(tmp_path / "auto"), "--head-from", "auto"]) == 0
    log = capsys.readouterr().out
    assert "head energy started from the base's slabs head" in log
    row = _last_row(tmp_path / "auto" / "metrics.csv")
    assert float(row["val/energy/forces"]) < 1e-4
    assert float(row["val/energy/energy_per_atom"]) < 1e-4
    # the other base head and a new head are far off on the same data
    assert main([*common, "--out", str(tmp_path / "bulk"), "--head-from", "bulk"]) == 0
    assert "started from the base's bulk head" in capsys.readouterr().out
    assert main([*common, "--out", str(tmp_path / "new"), "--head-from", "new"]) == 0
    for other in ("bulk", "new"):
        assert float(_last_row(tmp_path / other / "metrics.csv")["val/energy/forces"]) > 100 * float(
            row["val/energy/forces"]), other
    import json

    card = json.loads((tmp_path / "auto" / "model" / "config.json").read_text())["card"]
    assert any("started from the base's slabs head" in n for n in card["notes"])


def test_head_from_names_a_missing_head(base, tmp_path, capsys):
    from training.finetune import main

    write(tmp_path / "train.extxyz", _labelled_by(base, "bulk", 8, 3))
    assert main(["--base", str(base), "--train", str(tmp_path / "train.extxyz"), "--out", str(tmp_path / "x"),
                 "--epochs", "1", "--batch-size", "4", "--no-progress", "--head-from", "oc22"]) == 2
    err = capsys.readouterr().err
    assert "no head 'oc22'" in err and "slabs" in err


def test_transfer_head_rescales_to_the_new_units(base):
    """Energies of the copied head equal the base head's up to the references, for any new energy unit."""
    import torch

    from jmp_calc.config import HeadConfig
    from jmp_calc.io import load_model_dir
    from jmp_calc.model import JMPModel
    from training.base_model import transfer_backbone
    from training.head_transfer import transfer_head

    b = load_model_dir(base)
    src = b.heads[b.head_index("bulk")]
    new = JMPModel(b.config, [HeadConfig(name="energy", energy_std=src.energy_std * 3.7, graph=src.graph)])
    transfer_backbone(b, new)
    transfer_head(b, new, "bulk", 0, {29: 0.5})
    assert new.heads[0].atom_refs == {29: 0.5} and new.heads[0].energy_mean == 0.0
    w_b, w_n = b.output.out_energy[1][-1].weight, new.output.out_energy[0][-1].weight
    torch.testing.assert_close(w_n * new.heads[0].energy_std, w_b * src.energy_std)
    assert np.isfinite(w_n.detach().numpy()).all()


def test_finetune_defaults_by_mode(base, tmp_path):
    """A copied head gets its own default rate (3e-4); scratch, a new head and property-only targets keep 3e-3."""
    from training.finetune import DEFAULT_LR, DEFAULT_TRANSFER_LR, parse, run_config

    write(tmp_path / "t.extxyz", _labelled_by(base, "bulk", 4, 3))
    common = ["--base", str(base), "--train", str(tmp_path / "t.extxyz")]
    cases = {(): ("auto", DEFAULT_TRANSFER_LR), ("--head-from", "bulk"): ("bulk", DEFAULT_TRANSFER_LR),
             ("--head-from", "new"): (None, DEFAULT_LR), ("--from-scratch",): (None, DEFAULT_LR),
             ("--head-from", "bulk", "--lr", "2e-3"): ("bulk", 2e-3), ("--targets", "gap"): (None, DEFAULT_LR)}
    for i, (flags, (head_from, lr)) in enumerate(cases.items()):
        cfg, _ = run_config(parse([*common, "--out", str(tmp_path / f"o{i}"), *flags]))
        assert (cfg.model.head_from, cfg.optim.lr) == (head_from, lr), flags
    assert DEFAULT_TRANSFER_LR < DEFAULT_LR


def test_head_from_auto_chooses_per_dataset(base, tmp_path, capsys):
    """A multi-dataset run (training.pretrain with model.head_from): each dataset's head is scored on its own
    structures and starts from the base head that labelled them."""
    from training.pretrain import main

    write(tmp_path / "a.extxyz", _labelled_by(base, "slabs", 12, 5))
    write(tmp_path / "b.extxyz", _labelled_by(base, "bulk", 12, 6))
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"name: two\nout: {tmp_path / 'out'}\nseed: 0\nmodel: {{init_from: {base}, head_from: auto}}\ndatasets:\n"
        f"  - {{name: a, train: {tmp_path / 'a.extxyz'}, forces: conservative}}\n"
        f"  - {{name: b, train: {tmp_path / 'b.extxyz'}, forces: conservative}}\n"
        "optim: {lr: 1.0e-12}\ntrainer: {max_epochs: 1, batch_size: 4, progress: false, threads: 1}\n")
    assert main([str(cfg)]) == 0
    log = capsys.readouterr().out
    assert "head a started from the base's slabs head" in log
    assert "head b started from the base's bulk head" in log


def test_elements_missing_from_the_scored_batches_keep_their_references(base):
    """The references are corrected on the first batches only; an element they lack (fluorine in a molecule set
    whose first batches have none) keeps the reference fitted on the whole training set, not 0."""
    from jmp_calc.io import load_model_dir
    from training.batching import Collater
    from training.data.base import Sample
    from training.head_transfer import score_heads
    from training.task import Task

    b = load_model_dir(base)
    frames = _labelled_by(base, "bulk", 6, 7)
    samples = [Sample(numbers=a.numbers, positions=a.positions, cell=np.array(a.cell), pbc=a.pbc,
                      energy=a.get_potential_energy(), forces=a.get_forces()) for a in frames]
    task = Task(name="energy", graph=b.heads[1].graph, head=0, energy=True, forces="conservative")
    batch = Collater([task], b.config.qint_tags, [])([(s, 0) for s in samples])
    prior = {28: -1.0, 29: 0.5, 46: -3.0, 9: -7.25}
    scores = {s.name: s for s in score_heads(b, [batch], prior_refs=prior)}
    refs = scores["bulk"].atom_refs
    assert refs[9] == -7.25  # no fluorine in the batches: the prior stays
    assert scores["bulk"].energy_mae < 1e-4 and scores["bulk"].force_mae < 1e-4
    for z, offset in OFFSETS.items():  # the seen elements are corrected (the labels carry OFFSETS on top)
        assert refs[z] != prior[z] and np.isfinite(refs[z]), (z, offset)
