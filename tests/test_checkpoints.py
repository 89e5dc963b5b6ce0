"""Checkpoint loading is strict and safe; our safetensors format round-trips bit for bit."""

from __future__ import annotations

import os
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import SMALL_CKPT, TINY_CKPT, require_fixtures, run_all_heads

from jmp_calc.io import CheckpointError, UnsafeCheckpointError, load_jmp_checkpoint, load_model, save_model


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


def test_pickle_payload_is_refused(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    ck = torch.load(SMALL_CKPT, weights_only=True)
    ck["hyper_parameters"]["payload"] = _Evil(marker)
    torch.save(ck, path)
    with pytest.raises(UnsafeCheckpointError, match="system"):
        load_model(path)
    assert not marker.exists()


def test_unknown_harmless_classes_are_stubbed(tmp_path, monkeypatch):
    """Released files pickle config objects of the training code; they load without that code installed."""
    mod = tmp_path / "fake_jmp_config.py"
    mod.write_text(textwrap.dedent("""
        class BackboneConfig:
            def __init__(self, d):
                self.__dict__.update(d)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import fake_jmp_config

    ck = torch.load(SMALL_CKPT, weights_only=True)
    ck["hyper_parameters"]["backbone"] = fake_jmp_config.BackboneConfig(ck["hyper_parameters"]["backbone"])
    path = tmp_path / "with_class.pt"
    torch.save(ck, path)
    monkeypatch.delitem(sys.modules, "fake_jmp_config")
    mod.unlink()
    model = load_model(path, ema=False)
    ref = load_model(SMALL_CKPT, ema=False)
    for (k, a), (_, b) in zip(model.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(a, b), k


def test_truncated_and_wrong_files(tmp_path):
    data = SMALL_CKPT.read_bytes()
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated|not a PyTorch"):
        load_model(trunc)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_model(text)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3)}, plain)
    with pytest.raises(CheckpointError, match="not a JMP Lightning checkpoint"):
        load_model(plain)
    with pytest.raises(CheckpointError, match="no model at"):
        load_model(tmp_path / "missing.pt")


def test_strict_loading_rejects_mismatched_weights(tmp_path):
    ck = torch.load(SMALL_CKPT, weights_only=True)
    ck["state_dict"].pop("backbone.out_mlp_E.out_mlp.0.linear.weight")
    path = tmp_path / "missing_key.pt"
    torch.save(ck, path)
    with pytest.raises(CheckpointError, match="missing"):
        load_model(path, ema=False)


def test_ema_weights_are_used():
    raw, ema = load_model(SMALL_CKPT, ema=False), load_model(SMALL_CKPT, ema=True)
    ck = torch.load(SMALL_CKPT, weights_only=True)
    emb = ck["optimizer_states"][0]["ema"][0]
    assert torch.equal(ema.embedding.atom_embedding.weight, emb)
    assert not torch.equal(raw.embedding.atom_embedding.weight, emb)


def test_safetensors_round_trip_bit_identical(tmp_path):
    require_fixtures()
    model = load_jmp_checkpoint(TINY_CKPT, ema=True)
    out = save_model(model, tmp_path / "model", card={"license": "test"})
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "config.json"}
    again = load_model(out)
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert again.heads == model.heads and again.config == model.config
    s = {"numbers": np.array([8, 1, 1]), "positions": np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0.0]])}
    e1 = run_all_heads(model, [s], ["ani1x"])[0]
    e2 = run_all_heads(again, [s], ["ani1x"])[0]
    assert np.array_equal(e1, e2)
    with pytest.raises(FileExistsError):
        save_model(model, out)


def test_corrupt_model_dir(tmp_path):
    require_fixtures()
    out = save_model(load_jmp_checkpoint(TINY_CKPT), tmp_path / "m")
    w = out / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(out)
    (out / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(out)
