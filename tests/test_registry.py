"""Models by name: registry, Hugging Face cache (hand-built, offline: no test touches the network), sha256."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import SMALL_CKPT

from jmp_calc.io import REGISTRY, CheckpointError, ModelEntry, ModelNotAvailableError, load_model, save_model
from jmp_calc.io.hub import sha256sum

REV = "0123456789abcdef0123456789abcdef01234567"


def _hub_cache(tmp_path, files):
    cache = tmp_path / "hub"
    repo = cache / "models--jmp-calc--test-model"
    snap = repo / "snapshots" / REV
    snap.mkdir(parents=True)
    for f in files:
        shutil.copy(f, snap / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REV)
    return cache


@pytest.fixture
def offline_model(tmp_path, monkeypatch):
    model_dir = save_model(load_model(SMALL_CKPT, ema=False), tmp_path / "model")
    files = [model_dir / "model.safetensors", model_dir / "config.json"]
    cache = _hub_cache(tmp_path, files)
    entry = ModelEntry(name="test-model", description="test", license="MIT", source="hub",
                       repo_id="jmp-calc/test-model", revision=REV,
                       files=tuple((f.name, sha256sum(f)) for f in files))
    monkeypatch.setitem(REGISTRY, "test-model", entry)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return entry, model_dir


def test_load_by_name_from_offline_cache(offline_model):
    entry, model_dir = offline_model
    model = load_model("test-model")
    ref = load_model(model_dir)
    assert all((a == b).all() for a, b in zip(model.state_dict().values(), ref.state_dict().values()))
    assert model.registry_entry.name == "test-model"


def test_sha256_mismatch_is_refused(offline_model, monkeypatch):
    entry, _ = offline_model
    bad = ModelEntry(**{**entry.__dict__, "files": ((entry.files[0][0], "0" * 64), entry.files[1])})
    monkeypatch.setitem(REGISTRY, "test-model", bad)
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_model("test-model")


def test_offline_and_not_cached(tmp_path, monkeypatch):
    entry = ModelEntry(name="absent", description="", license="MIT", source="hub",
                       repo_id="jmp-calc/absent", revision=REV, files=(("model.safetensors", ""),))
    monkeypatch.setitem(REGISTRY, "absent", entry)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match="python -m jmp_calc.download absent"):
        load_model("absent")


def test_unpublished_and_unknown_names():
    with pytest.raises(ModelNotAvailableError, match="s3.amazonaws.com/jmp-s.pt"):
        load_model("jmp-s")
    with pytest.raises(CheckpointError, match="no model at"):
        load_model("no-such-model")


def test_list_models_and_download_cli(capsys):
    from jmp_calc import list_models

    rows = list_models()
    assert {"jmp-mini-emt", "jmp-s", "jmp-l"} <= {r["name"] for r in rows}
    assert "CC-BY-NC" in capsys.readouterr().out
    # the head column comes from each embedded model's card, not from the registry
    heads = {r["name"]: r["head"] for r in rows}
    assert heads["jmp-mini-emt"] == load_model("jmp-mini-emt").card.default_head == "energy"
    assert heads["jmp-mini-general"] == "per structure: molecules, surfaces"
    assert heads["jmp-mini-s"] == heads["jmp-s"] == "(choose: head=...)" and load_model("jmp-mini-s").card.pretraining
    r = subprocess.run([sys.executable, "-m", "jmp_calc.download", "jmp-s"], capture_output=True, text=True)
    assert r.returncode == 1 and "not published" in r.stderr


def test_task_models_listed_and_unpublished_error(capsys):
    from jmp_calc import list_models

    rows = {r["name"]: r for r in list_models()}
    for name in ("jmp-s-md22", "jmp-l-md22", "jmp-s-rmd17", "jmp-l-qm9-u0", "jmp-s-spice", "jmp-s-qmof"):
        assert name in rows and "not published" in rows[name]["source"]
        assert rows[name]["license"] == "CC-BY-NC 4.0"
        entry = REGISTRY[name]
        assert entry.revision is None and all(sha == "" for _, sha in entry.files) and entry.task
    out = capsys.readouterr().out
    assert "jmp-l-qm9-u0" in out
    with pytest.raises(ModelNotAvailableError, match=r"python -m training.finetune --task md22-stachyose"):
        load_model("jmp-s-md22")


@pytest.mark.parametrize("name, blocks", [("jmp-mini-s", 2), ("jmp-mini-l", 3)])
def test_embedded_pretrained_backbone_needs_a_head(name, blocks):
    """The mini-JMP backbones ship inside the package: offline, multi-head, conservative, pre-training heads used
    zero-shot only on request; L is the larger network (3 interaction blocks to S's 2)."""
    import numpy as np
    from ase.build import molecule

    from jmp_calc import JMPCalculator
    from jmp_calc.io import embedded_models

    assert name in embedded_models() and name in REGISTRY
    model = load_model(name)
    assert model.card.pretraining and model.config.num_blocks == blocks
    assert model.head_names == ["mini-oc20", "mini-ani1x", "mini-largemol", "mini-t1x"]
    assert not any(h.direct_forces for h in model.heads)
    with pytest.raises(ValueError, match="choose one of its heads"):
        JMPCalculator(name)
    with pytest.warns(UserWarning, match="zero-shot"):
        calc = JMPCalculator(name, head="mini-ani1x")
    atoms = molecule("CH3CH2OH")
    atoms.calc = calc
    assert np.isfinite(atoms.get_potential_energy())
    assert atoms.get_forces().shape == (9, 3)
