"""Memory of conservative forces on large systems: the recomputed path (bases and interaction blocks recomputed in
backward, the quadruplet aggregation in row chunks with its deferred basis) gives the results of the path that keeps
every activation, and keeps far less from forward to backward. Forced on for a small cell (thresholds set low)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk

import jmp_calc.model.interaction as interaction
import jmp_calc.model.layers as layers
from jmp_calc.config import GraphConfig, HeadConfig, tiny
from jmp_calc.graph.structures import batch_structures
from jmp_calc.model import JMPModel
from jmp_calc.potential import differentiable_geometry


def _setup(basis: str):
    torch.manual_seed(0)
    head = HeadConfig(name="e", direct_forces=False, graph=GraphConfig(cutoff=5.0, max_neighbors=12))
    model = JMPModel(tiny(absolute_rbf_cutoff=5.0, direct_forces=False, dihedral_basis=basis), [head]).double()
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.05, seed=0)
    return model, batch_structures([atoms], head.graph, model.config.qint_tags, dtype=torch.float64)


def _run(model, g, after_forward=lambda: None):
    """Energy, forces, stress and the parameter gradients of a force-training loss (double backward)."""
    model.zero_grad()
    pos_leaf, eps, pos, cell = differentiable_geometry(g, positions=True, strain=True)
    e = model(g, pos=pos, cell=cell, direct_forces=False)["energy"].sum()
    after_forward()
    f, s = torch.autograd.grad(e, [pos_leaf, eps], create_graph=True)
    ((f ** 2).sum() + (s ** 2).sum() + e).backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return [t.detach().numpy() for t in (e, f, s, grads)]


@pytest.mark.parametrize("basis", ["smooth", "legendre"])
def test_chunked_recomputed_path_equals_kept(basis, monkeypatch):
    model, g = _setup(basis)
    kept = _run(model, g)  # default thresholds: this small cell keeps everything
    chunks = []
    real = interaction._slot_aggregate
    monkeypatch.setattr(interaction, "_slot_aggregate", lambda *a: chunks.append(a[1].shape[0]) or real(*a))
    monkeypatch.setattr(layers, "RECOMPUTE_MIN_SLOTS", 0)
    monkeypatch.setattr(layers, "BLOCK_RECOMPUTE_MIN_SLOTS", 0)
    monkeypatch.setattr(layers, "CHUNK_ELEMENTS", 3000)  # about one atom's qint edges per chunk
    assert not chunks
    forward = []
    chunked = _run(model, g, lambda: forward.extend(chunks))
    # each block's forward covers every main edge once, in several chunks; backward recomputes them
    assert len(forward) >= 3 * model.config.num_blocks
    assert sum(forward) == model.config.num_blocks * g.main.num_edges
    assert len(chunks) > len(forward)
    for a, b in zip(kept, chunked):
        assert np.abs(a).max() > 0
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12 * np.abs(a).max())


def test_recomputed_path_keeps_less_for_backward(monkeypatch):
    """What autograd keeps from forward to backward (by storage): the recomputed path keeps the block inputs and
    the bases' outputs, not the activations."""
    model, g = _setup("smooth")

    def saved_bytes():
        seen: dict[int, int] = {}

        def pack(t):
            seen.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
            return t

        pos_leaf, eps, pos, cell = differentiable_geometry(g, positions=True, strain=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            e = model(g, pos=pos, cell=cell, direct_forces=False)["energy"].sum()
        torch.autograd.grad(e, [pos_leaf])
        return sum(seen.values())

    kept = saved_bytes()
    monkeypatch.setattr(layers, "RECOMPUTE_MIN_SLOTS", 0)
    monkeypatch.setattr(layers, "BLOCK_RECOMPUTE_MIN_SLOTS", 0)
    recomputed = saved_bytes()
    assert recomputed < 0.25 * kept, (recomputed, kept)


def test_int32_quadruplet_indices_give_the_int64_results():
    """The quadruplet index sets are stored as int32 (half their memory); the model gives bit for bit the results
    of int64 copies of them, on the kept and on the recomputed path."""
    import dataclasses

    model, g = _setup("smooth")
    fields = [f.name for f in dataclasses.fields(g.quad) if f.name != "keep"]  # keep: a bool mask
    assert all(getattr(g.quad, n).dtype == torch.int32 for n in fields) and g.quad.keep.dtype == torch.bool
    g64 = dataclasses.replace(g, quad=dataclasses.replace(g.quad, **{n: getattr(g.quad, n).long() for n in fields}))

    def energy_forces(batch):
        pos_leaf, _, pos, cell = differentiable_geometry(batch, positions=True, strain=False)
        e = model(batch, pos=pos, cell=cell, direct_forces=False)["energy"].sum()
        return [t.detach().numpy() for t in (e, torch.autograd.grad(e, [pos_leaf])[0])]

    for threshold in (layers.RECOMPUTE_MIN_SLOTS, 0):
        layers_threshold = layers.RECOMPUTE_MIN_SLOTS
        layers.RECOMPUTE_MIN_SLOTS = threshold
        try:
            for a, b in zip(energy_forces(g), energy_forces(g64)):
                assert np.array_equal(a, b)
        finally:
            layers.RECOMPUTE_MIN_SLOTS = layers_threshold


def test_the_call_recomputes_as_a_whole_from_its_padded_slots(monkeypatch):
    """One decision per call, from the size of its graphs (GraphBatch.padded_slots, not the model's width), in two
    tiers: from RECOMPUTE_MIN_SLOTS the aggregations are checkpointed (per block its three triplet aggregations
    and its quadruplet chunk), from BLOCK_RECOMPUTE_MIN_SLOTS also the bases and each block as a whole; one slot
    below a threshold, nothing of that tier is."""
    import torch.utils.checkpoint as ckpt

    model, g = _setup("smooth")
    slots = g.padded_slots
    assert slots == max(g.quad.keep.numel(), g.trip_e2e.pad_in.numel(), g.trip_a2e.pad_in.numel(),
                        g.trip_e2a.pad_in.numel()) > 0
    calls = []
    real = ckpt.checkpoint
    monkeypatch.setattr(ckpt, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    counts = {}
    before = layers.set_recompute_min_slots(0), layers.set_block_recompute_min_slots(0)
    try:
        for threshold, block_threshold in ((slots + 1, 0), (slots, slots + 1), (slots, slots)):
            layers.set_recompute_min_slots(threshold)
            layers.set_block_recompute_min_slots(block_threshold)
            calls.clear()
            pos_leaf, _, pos, cell = differentiable_geometry(g, positions=True, strain=False)
            model(g, pos=pos, cell=cell, direct_forces=False)["energy"].sum()
            counts[threshold, block_threshold] = len(calls)
    finally:
        layers.set_recompute_min_slots(before[0])
        layers.set_block_recompute_min_slots(before[1])
    assert (layers.RECOMPUTE_MIN_SLOTS, layers.BLOCK_RECOMPUTE_MIN_SLOTS) == (2**19, 2**21)  # the defaults
    n = model.config.num_blocks
    assert counts == {(slots + 1, 0): 0, (slots, slots + 1): 4 * n, (slots, slots): 1 + 5 * n}
