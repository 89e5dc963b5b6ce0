"""Architecture: the presets build exactly the released JMP models (parameter counts, every checkpoint key)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import require_fixtures

from jmp_calc.config import ConfigError, GemNetOCConfig, GraphConfig, HeadConfig, jmp_l, jmp_s, tiny
from jmp_calc.io.jmp_checkpoint import ema_parameter_keys
from jmp_calc.model import build_pretraining_model

EXPECTED = {"jmp_s": (jmp_s, 44_131_328, 405), "jmp_l": (jmp_l, 234_267_648, 585)}
DROPPED = (".seq_energy_pre.", "rbf.offset", "rbf.temps", "task_steps")


@pytest.fixture(scope="module")
def manifest():
    return json.loads((require_fixtures() / "jmp_state_dict_manifest.json").read_text())


@pytest.mark.parametrize("name", ["jmp_s", "jmp_l"])
def test_parameter_counts_and_keys(manifest, name):
    preset, n_params, n_tensors = EXPECTED[name]
    with torch.device("meta"):  # no memory, no init cost: shapes only
        model = build_pretraining_model(preset())
    params = list(model.parameters())
    assert sum(p.numel() for p in params) == n_params == manifest[name]["total_parameters_unique"]
    assert len(params) == n_tensors == manifest[name]["num_parameter_tensors_unique"]
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ref = {e["key"]: tuple(e["shape"]) for e in manifest[name]["keys"]}
    homeless = [k for k in ref if k not in ours and not any(d in k for d in DROPPED)]
    assert not homeless, f"checkpoint keys without a home: {homeless[:5]}"
    assert not [k for k in ours if k not in ref], "keys the released checkpoints do not have"
    assert {k: s for k, s in ours.items()} == {k: ref[k] for k in ours}
    # the EMA order rule reproduces the manifest's ema_order
    assert ema_parameter_keys([e["key"] for e in manifest[name]["keys"]]) == manifest[name]["ema_order"]


def test_presets_match_manifest_backbone(manifest):
    for name, preset in (("jmp_s", jmp_s), ("jmp_l", jmp_l)):
        bb = manifest[name]["backbone_config"]
        cfg = GemNetOCConfig.from_jmp_hparams(bb)
        assert cfg == preset(edge_dropout=cfg.edge_dropout, dropout=cfg.dropout)


def test_config_round_trip_and_errors():
    cfg = tiny()
    assert GemNetOCConfig.from_dict(cfg.to_dict()) == cfg
    h = HeadConfig(name="x", atom_refs={1: -13.6}, graph=GraphConfig(cutoff=6.0, max_neighbors=20))
    assert HeadConfig.from_dict(h.to_dict()) == h
    assert GraphConfig(max_neighbors=30).caps == {"main": 30, "a2ee2a": 20, "qint": 8, "a2a": 1000}
    with pytest.raises(ConfigError, match="unknown field"):
        GemNetOCConfig.from_dict({"num_blockz": 3})
    with pytest.raises(ConfigError, match="num_blocks"):
        GemNetOCConfig(num_blocks=0)
    with pytest.raises(ConfigError, match="sbf"):
        GemNetOCConfig.from_jmp_hparams(dict(jmp_s().to_dict(), sbf={"name": "spherical_harmonics"},
                                             cbf={"name": "spherical_harmonics"}))


def test_smooth_dihedral_basis_is_continuous_at_collinear_triplets():
    """JMP's dihedral basis jumps where c-a-b is collinear (every fcc atom has such triplets): autograd forces
    there disagree with finite differences. The 'smooth' option makes the energy continuous and differentiable."""
    import warnings

    import numpy as np
    from ase.build import bulk

    from jmp_calc.config import GraphConfig, HeadConfig
    from jmp_calc.model import JMPModel
    from jmp_calc.potential import Potential

    warnings.simplefilter("ignore", RuntimeWarning)
    atoms = bulk("Cu", "fcc", a=3.61).repeat((3, 3, 3))
    atoms.positions[0, 0] += 0.01
    gaps = {}
    for basis in ("legendre", "smooth"):
        torch.manual_seed(0)
        head = HeadConfig(name="e", direct_forces=False, graph=GraphConfig(cutoff=5.0, max_neighbors=18,
                                                                           max_neighbors_a2ee2a=18,
                                                                           max_neighbors_qint=12))
        pot = Potential(JMPModel(tiny(absolute_rbf_cutoff=5.0, direct_forces=False, dihedral_basis=basis), [head]),
                        forces="conservative", dtype="float64")
        f = pot.predict([atoms])[0]["forces"]
        j, k = np.unravel_index(np.abs(f).argmax(), f.shape)
        b = atoms.copy()
        b.positions[j, k] += 1e-5
        ep = pot.predict([b])[0]["energy"]
        b.positions[j, k] -= 2e-5
        em = pot.predict([b])[0]["energy"]
        gaps[basis] = abs(-(ep - em) / 2e-5 - f[j, k]) / max(abs(f[j, k]), 1e-3)
    assert gaps["smooth"] < 1e-4
    assert gaps["legendre"] > 0.1  # documents the discontinuity of the original basis
    assert GemNetOCConfig().dihedral_basis == "legendre"


@pytest.mark.parametrize("basis", ["legendre", "smooth"])
def test_recomputed_aggregations_equal_kept(basis, monkeypatch):
    """Recomputing the padded triplet/quadruplet aggregations in backward (activation checkpointing, forced on for
    this small cell) gives the same energy, -dE/dx, stress and, through the double backward of force training,
    the same parameter gradients as keeping them."""
    import numpy as np
    from ase.build import bulk

    import jmp_calc.model.layers as layers
    from jmp_calc.graph.structures import batch_structures
    from jmp_calc.model import JMPModel
    from jmp_calc.potential import differentiable_geometry

    torch.manual_seed(0)
    head = HeadConfig(name="e", direct_forces=False, graph=GraphConfig(cutoff=5.0, max_neighbors=12))
    model = JMPModel(tiny(absolute_rbf_cutoff=5.0, direct_forces=False, dihedral_basis=basis), [head]).double()
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.05, seed=0)
    g = batch_structures([atoms], head.graph, model.config.qint_tags, dtype=torch.float64)
    import torch.utils.checkpoint as ckpt

    calls = []
    real = ckpt.checkpoint
    monkeypatch.setattr(ckpt, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    runs = []
    for recompute in (False, True):
        monkeypatch.setattr(layers, "RECOMPUTE", recompute)
        monkeypatch.setattr(layers, "RECOMPUTE_MIN_SLOTS", 0)
        monkeypatch.setattr(layers, "BLOCK_RECOMPUTE_MIN_SLOTS", 0)
        model.zero_grad()
        pos_leaf, eps, pos, cell = differentiable_geometry(g, positions=True, strain=True)
        e = model(g, pos=pos, cell=cell, direct_forces=False)["energy"].sum()
        n_forward = len(calls)  # (backward calls it again for the nested checkpoints of recomputed blocks)
        f, s = torch.autograd.grad(e, [pos_leaf, eps], create_graph=True)
        ((f ** 2).sum() + (s ** 2).sum() + e).backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        runs.append([t.detach().numpy() for t in (e, f, s, grads)])
    # the recompute run only: the bases, and per block the block itself, its 3 triplet aggregations and its
    # quadruplet aggregation (one chunk here; several: tests/test_memory.py)
    assert n_forward == model.config.num_blocks * 5 + 1
    for kept, recomputed in zip(*runs):
        assert np.abs(kept).max() > 0
        # to 1e-12 of the largest element: the chunks and recomputed blocks accumulate the gradients of shared
        # inputs in another order (float64 rounding; parameter gradients reach 2e5 here)
        np.testing.assert_allclose(recomputed, kept, rtol=1e-12, atol=1e-12 * np.abs(kept).max())


@pytest.mark.parametrize("smooth", [True, False])
def test_slot_dihedral_equals_per_quadruplet_formula(smooth):
    """The quadruplets' dihedral basis on the per-qint-edge grid (component planes, one gather per component)
    equals the plain per-slot formula on gathered (Eq, M, K, 3) tensors bit for bit where ``keep`` is set, is
    exactly zero elsewhere (padding, d == c), and has the same gradients."""
    from jmp_calc.model.bases import _angle, dihedral_slots, gather_padded, legendre_basis, smooth_dihedral_basis

    gen = torch.Generator().manual_seed(0)
    n_q, m, k, ns = 4, 3, 5, 7
    u = torch.randn(n_q * m, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(13, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    pad = torch.randint(0, 14, (n_q, k), generator=gen)  # 13 = sentinel (zero row)
    pad[0, -2:] = 13
    keep = (torch.rand(n_q, m, k, generator=gen) > 0.3) & (pad < 13)[:, None, :]
    w_ext = torch.cat([w, w.new_zeros(1, 3)])
    w2_ext = torch.cat([(w * w).sum(-1), w.new_zeros(1)])
    got = dihedral_slots(u, w_ext, w2_ext if smooth else None, pad, keep, ns, smooth)
    wg = gather_padded(w, pad)[:, None].expand(n_q, m, k, 3)
    ug = u.reshape(n_q, m, 1, 3).expand_as(wg)
    ref = smooth_dihedral_basis(ug, wg, ns, dim=2) if smooth else legendre_basis(torch.cos(_angle(ug, wg)), ns, dim=2)
    sel = keep[:, :, None, :].expand_as(ref)
    assert got.shape == (n_q, m, ns, k) and torch.equal(got[sel], ref[sel])
    assert torch.all(got[~sel] == 0) and keep.any() and not keep.all()
    go = torch.randn(ref.shape, dtype=torch.float64, generator=gen)
    want = torch.autograd.grad(ref, (u, w), go * sel)
    for a, b in zip(want, torch.autograd.grad(got, (u, w), go)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_scale_factor_multiplier_follows_its_buffer():
    """ScaleFactor caches its multiplier; the cache must follow in-place changes (fit, load_state_dict), dtype
    casts, and stay usable by autograd after being built under inference mode (as constants are)."""
    from jmp_calc.model.layers import ScaleFactor, const

    sf = ScaleFactor()
    x = torch.full((2,), 3.0)
    with torch.inference_mode():
        assert torch.equal(sf(x), x)  # not fitted: identity
        c = const(0.25, x)
    sf.scale_factor.fill_(2.0)
    assert torch.equal(sf(x), 2 * x)
    sf.load_state_dict({"scale_factor": torch.tensor(0.5)})
    assert torch.equal(sf(x), 0.5 * x)
    sf = sf.to(torch.float64)
    y = sf(x.double())
    assert y.dtype == torch.float64 and torch.equal(y, 0.5 * x.double())
    xg = torch.ones(2, requires_grad=True)
    (g,) = torch.autograd.grad((sf(xg) * c).sum(), xg)  # multiplier and constant built under inference mode
    assert torch.equal(g, torch.full((2,), 0.125))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_rbf_has_no_denormals_and_equals_the_plain_formula(dtype):
    """JMP's 128 narrow Gaussians put most exp arguments far below the smallest normal exponent, where CPU exp
    is 10-30x slower; the basis sets those terms (< 2e-38 in float32) to exactly 0 and agrees with the plain
    formula everywhere else, gradients included."""
    from jmp_calc.model.bases import GaussianRBF

    rbf = GaussianRBF(128, 12.0)
    d = torch.linspace(0.5, 12.5, 3001, dtype=dtype).requires_grad_(True)
    g = rbf(d)
    tiny = torch.finfo(dtype).tiny
    x = d / 12.0
    env = rbf.envelope(x)[:, None]
    inner = d < 11.0
    gauss = (g / env)[inner].detach()  # the exp terms
    assert not ((gauss != 0) & (gauss < tiny)).any()  # no subnormal numbers among them
    plain = env * torch.exp(-((x[:, None] - rbf.offset.to(dtype)) ** 2) * rbf.temps.to(dtype))
    plain_gauss = (plain / env)[inner].detach()
    assert ((plain_gauss != 0) & (plain_gauss < tiny)).any()  # (the plain formula has them)
    assert (plain[g == 0].abs() < 2 * tiny).all() and (g > 0).sum() > 3 * d.numel()
    torch.testing.assert_close(g, plain, rtol=1e-6 if dtype == torch.float32 else 1e-14, atol=2 * tiny)
    w = torch.randn(128, dtype=dtype)
    ga, = torch.autograd.grad((g * w).sum(), d)
    gb, = torch.autograd.grad((plain * w).sum(), d)
    # (relative to the largest: near the cutoff the derivative is a small sum of large terms of both signs)
    tol = (1e-5 if dtype == torch.float32 else 1e-12) * float(gb.abs().max())
    torch.testing.assert_close(ga, gb, rtol=0, atol=tol)
