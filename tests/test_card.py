"""The typed model card (jmp_calc.card.ModelCard): validated at load (unknown or ill-typed fields name the file and
field), written to config.json, carried by the model from its construction; every shipped model and both
checkpoint formats give the numbers they gave before the card was typed."""

from __future__ import annotations

import importlib.util
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, SMALL_CKPT, TINY_CKPT

from jmp_calc import JMPCalculator, ModelCardError
from jmp_calc.card import HeadRule, ModelCard
from jmp_calc.io import EMBEDDED_DIR, embedded_models, load_model, load_model_dir, save_model

ROOT = Path(__file__).resolve().parents[1]


def _card_cases():
    """tests/data/card_cases.py: the structures and models the reference was made with (make_card_reference.py)."""
    spec = importlib.util.spec_from_file_location("card_cases", DATA / "card_cases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_models_and_checkpoints_give_the_numbers_of_before(tmp_path):
    """tests/data/card_reference.npz was computed by the loaders before ModelCard (see make_card_reference.py)."""
    ref = np.load(DATA / "card_reference.npz")
    cc = _card_cases()
    structs = cc.structures()
    small_dir = save_model(load_model(SMALL_CKPT, ema=False), tmp_path / "small")
    cases = cc.cases(TINY_CKPT, SMALL_CKPT, small_dir)
    n = 0
    for i, (model, kw) in enumerate(cases):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calc = JMPCalculator(model, dtype="float64", **kw)
        for name, atoms in structs.items():
            if not cc.evaluated(model, name):
                assert f"{i}/{name}/energy" not in ref
                continue
            (r,) = calc.potential.predict([atoms])
            # float64 on the CPU: equal up to the last bits. Relative 1e-13 leaves room for sums reordered by the
            # thread count (the random-weight checkpoints give energies of ~1e6 eV: 7e-10 eV apart at 2 threads)
            e_ref = float(ref[f"{i}/{name}/energy"])
            assert abs(r["energy"] - e_ref) <= 1e-13 * max(1.0, abs(e_ref)), (model, name)
            f_ref = ref[f"{i}/{name}/forces"]
            np.testing.assert_allclose(r["forces"], f_ref, rtol=0, atol=1e-13 * max(1.0, float(np.abs(f_ref).max())))
            n += 1
    assert n == len(ref.files) // 2 == 19


def test_loading_through_the_card_is_bit_identical_to_the_bare_weights():
    """The same config and weights without any card: the card changes nothing in the numbers."""
    from ase.build import bulk
    from safetensors.torch import load_file

    from jmp_calc.config import GemNetOCConfig, HeadConfig
    from jmp_calc.model import JMPModel
    from jmp_calc.potential import Potential

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=4)
    for name in embedded_models():
        cfg = json.loads((EMBEDDED_DIR / name / "config.json").read_text())
        bare = JMPModel(GemNetOCConfig.from_dict(cfg["backbone"]), [HeadConfig.from_dict(h) for h in cfg["heads"]])
        bare.load_state_dict(load_file(str(EMBEDDED_DIR / name / "model.safetensors")))
        loaded = load_model(name)
        assert bare.card == ModelCard() and loaded.card.name == name
        head = loaded.head_names[-1]
        forces = "conservative" if not loaded.heads[-1].direct_forces else "direct"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = Potential(loaded, head=head, forces=forces, dtype="float64").predict([atoms])[0]
            b = Potential(bare, head=head, forces=forces, dtype="float64").predict([atoms])[0]
        assert a["energy"] == b["energy"] and np.array_equal(a["forces"], b["forces"]), name


def test_every_shipped_card_round_trips():
    for name in embedded_models():
        raw = json.loads((EMBEDDED_DIR / name / "config.json").read_text())["card"]
        card = ModelCard.from_dict(raw, where=name)
        assert ModelCard.from_dict(card.to_dict()) == card
        # what to_dict leaves out is a default (None, pretraining false)
        assert {k: v for k, v in raw.items() if v is not None and (k, v) != ("pretraining", False)} == \
            card.to_dict(), name
    general = load_model("jmp-mini-general").card
    assert general.head_rules == (HeadRule("molecules", only_elements=(1, 6, 7, 8)), HeadRule("surfaces"))
    assert general.forces == {"surfaces": "conservative", "molecules": "conservative"}
    assert load_model(TINY_CKPT).card.pretraining  # JMP checkpoints: pre-training heads, by their format


def _copy(tmp_path, name="jmp-mini-emt") -> Path:
    d = tmp_path / name
    shutil.copytree(EMBEDDED_DIR / name, d)
    return d


def _edit_card(d: Path, **fields):
    cfg = json.loads((d / "config.json").read_text())
    cfg["card"].update(fields)
    (d / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("fields, message", [
    ({"defualt_head": "energy"}, r"unknown card field\(s\) \['defualt_head'\]"),
    ({"elements": "Cu"}, r"card field 'elements' must be a list of integers, got 'Cu'"),
    ({"elements": [29, "Cu"]}, r"card field 'elements'\[1\] must be an integer, got 'Cu'"),
    ({"pretraining": "no"}, r"card field 'pretraining' must be true/false, got 'no'"),
    ({"forces": {"energy": "auto"}}, r"card field 'forces' must map heads to 'direct' or 'conservative'"),
    ({"default_head": "oc20"}, r"card field 'default_head' names head 'oc20'; the model has heads \['energy'\]"),
    ({"head_rules": [{"head": "energy", "elements": [29]}]}, r"head_rules'\[0\]: unknown condition"),
    ({"head_rules": [{"head": "energy", "only_elements": 29}]},
     r"head_rules'\[0\]\.only_elements must be a list of integers or null, got 29"),
])
def test_bad_card_fields_name_the_file_and_field(tmp_path, fields, message):
    d = _copy(tmp_path)
    _edit_card(d, **fields)
    with pytest.raises(ModelCardError, match=message) as err:
        load_model_dir(d)
    assert str(d / "config.json") in str(err.value)
    with pytest.raises(ModelCardError, match=message.split(" names head")[0]):  # writing checks the same rules
        save_model(load_model("jmp-mini-emt"), tmp_path / "out", card={**load_model("jmp-mini-emt").card.to_dict(),
                                                                        **fields})


def test_card_is_written_and_carried(tmp_path):
    model = load_model("jmp-mini-emt")
    card = model.card.replace(name="renamed", notes=["a note"])
    out = save_model(model, tmp_path / "m", card=card)
    assert json.loads((out / "config.json").read_text())["card"]["name"] == "renamed"
    back = load_model_dir(out)
    assert back.card == card and back.card.notes == ("a note",)
    assert save_model(back, tmp_path / "again").joinpath("config.json").read_text() == \
        (out / "config.json").read_text()  # the model's own card by default


def test_no_untyped_card_reads_left():
    """The card is an attribute of every JMPModel: nothing reads it as an optional dict any more."""
    hits = [f"{p.relative_to(ROOT)}:{i}" for pkg in ("jmp_calc", "training", "examples")
            for p in (ROOT / pkg).rglob("*.py") for i, line in enumerate(p.read_text().splitlines(), 1)
            if any(f"{q}card{q}, {d}" in line for q in "'\"" for d in ("None", "{}"))]
    assert not hits, hits
