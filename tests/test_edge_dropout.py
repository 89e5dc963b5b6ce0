"""Edge dropout (JMP's rule): during training each a2a edge is dropped with probability p before main / a2ee2a / qint
are selected from a2a; p = 0 changes nothing; validation and inference never drop; the draws are a pure function of
(run seed, epoch, rank, position in the epoch), so they survive resumes and do not depend on the worker count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import fcc111, molecule

from jmp_calc.config import GraphConfig, HeadConfig, tiny
from jmp_calc.graph.batch import collate
from jmp_calc.graph.structures import as_structure, build_graphs
from jmp_calc.model import JMPModel

GRAPH = GraphConfig(cutoff=5.0, max_neighbors=8)  # caps: main 8, a2ee2a 5, qint 2, a2a 266


def _slab():
    a = fcc111("Pt", (3, 3, 3), vacuum=5.0)
    a.set_tags([0] * 9 + [1] * 18)
    a.rattle(0.05, seed=1)
    return as_structure(a)


def _keys(e):
    return set(zip(e.src.tolist(), e.dst.tolist(), map(tuple, e.offset.tolist())))


def test_p0_builds_the_same_graphs():
    s = _slab()
    ref = build_graphs(s, GRAPH, [1, 2])
    same = build_graphs(s, GRAPH, [1, 2], edge_dropout=0.0, rng=np.random.default_rng(0))
    for name in ("main", "a2ee2a", "qint", "a2a"):
        a, b = getattr(ref, name), getattr(same, name)
        for f in ("src", "dst", "offset", "dist"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))


def test_dropout_removes_a2a_edges_before_the_others_are_selected():
    s = _slab()
    full = build_graphs(s, GRAPH, [1, 2])
    p = 0.3
    g = build_graphs(s, GRAPH, [1, 2], edge_dropout=p, rng=np.random.default_rng(7))
    a2a = _keys(g.a2a)
    assert _keys(g.a2a) < _keys(full.a2a)
    frac = 1 - len(g.a2a) / len(full.a2a)
    assert abs(frac - p) < 0.05, frac  # ~ binomial(n = 7k edges), sd 0.005
    assert _keys(g.a2ee2a) <= a2a and _keys(g.qint) <= a2a
    # main: the k-NN edges kept by symmetrisation come from the dropped a2a; their reverses are added
    for src, dst, off in _keys(g.main):
        assert (src, dst, off) in a2a or (dst, src, tuple(-o for o in off)) in a2a
    # selected after the drop: every atom still has its main/a2ee2a caps filled from the surviving neighbours
    for e, cap in ((g.a2ee2a, 5), (g.qint, 2)):
        counts = np.bincount(e.dst, minlength=g.n_atoms)
        if e is g.a2ee2a:
            assert (counts == cap).all()  # a 5 A sphere in Pt holds far more than 5 neighbours
        np.testing.assert_array_equal(np.diff(e.dst) >= 0, True)  # still sorted by target
    # and they are the k nearest of the survivors: the a2ee2a edges of atom 0 are its 5 shortest surviving a2a edges
    d0 = np.sort(g.a2a.dist[g.a2a.dst == 0])[:5]
    np.testing.assert_allclose(np.sort(g.a2ee2a.dist[g.a2ee2a.dst == 0]), d0)
    assert build_graphs(s, GRAPH, [1, 2], edge_dropout=p, rng=np.random.default_rng(8)).a2a.src.tolist() != \
        g.a2a.src.tolist()


def test_bad_dropout_arguments():
    s = _slab()
    with pytest.raises(ValueError, match="needs rng"):
        build_graphs(s, GRAPH, [1, 2], edge_dropout=0.1)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        build_graphs(s, GRAPH, [1, 2], edge_dropout=1.0, rng=np.random.default_rng(0))


def _model(edge_dropout):
    torch.manual_seed(0)
    head = HeadConfig(name="e", graph=GRAPH)
    return JMPModel(tiny(absolute_rbf_cutoff=5.0, edge_dropout=edge_dropout, dihedral_basis="smooth"), [head])


def _batch(structs, graphs):
    return collate(graphs, [s.positions for s in structs], [s.numbers for s in structs], [s.cell for s in structs],
                   dtype=torch.float64)


def test_p0_model_train_and_eval_outputs_identical():
    """Model + graph path: with p = 0 (the fine-tuning default) train mode is eval mode."""
    from training.batching import Collater
    from training.task import Task

    model = _model(0.0).double()
    structs = [_slab(), as_structure(molecule("CH3CH2OH"))]
    tasks = [Task("slab", GRAPH, head=0, energy=True, forces="direct"),
             Task("mol", GRAPH, set_tags_to=2, head=0, energy=True, forces="direct")]
    items = [((_sample(s)), i) for i, s in enumerate(structs)]
    train_c = Collater(tasks, model.config.qint_tags, edge_dropout=model.config.edge_dropout, seed=0)
    eval_c = Collater(tasks, model.config.qint_tags)
    gb_train = train_c([(s, t, (0, 0, j)) for j, (s, t) in enumerate(items)]).g.to(dtype=torch.float64)
    gb_eval = eval_c(items).g.to(dtype=torch.float64)
    model.train()
    out_t = model(gb_train)
    model.eval()
    out_e = model(gb_eval)
    torch.testing.assert_close(out_t["energy"], out_e["energy"], rtol=0, atol=0)
    torch.testing.assert_close(out_t["forces"], out_e["forces"], rtol=0, atol=0)


def _sample(s):
    from training.data.base import Sample

    n = len(s.numbers)
    return Sample(s.numbers, s.positions, s.cell, s.pbc, tags=s.tags, energy=-1.0, forces=np.zeros((n, 3)))


def _same(x, y) -> bool:
    return x.index.shape == y.index.shape and bool(torch.equal(x.index, y.index))


def test_collater_drops_only_keyed_training_items_deterministically():
    from training.batching import Collater
    from training.task import Task

    s = _sample(_slab())
    tasks = [Task("slab", GRAPH, head=0, energy=True, forces="direct")]
    train_c = Collater(tasks, [1, 2], edge_dropout=0.1, seed=3)
    ref = Collater(tasks, [1, 2])([(s, 0)]).g
    # eval batches (no key) never drop, even with the training collater
    assert train_c([(s, 0)]).g.a2a.index.shape == ref.a2a.index.shape
    a = train_c([(s, 0, (2, 0, 17))]).g
    b = train_c([(s, 0, (2, 0, 17))]).g
    c = train_c([(s, 0, (2, 0, 18))]).g
    d = Collater(tasks, [1, 2], edge_dropout=0.1, seed=4)([(s, 0, (2, 0, 17))]).g
    assert a.a2a.index.shape[1] < ref.a2a.index.shape[1]
    assert torch.equal(a.a2a.index, b.a2a.index) and torch.equal(a.main.index, b.main.index)  # same key, same graph
    assert not _same(a.a2a, c.a2a)  # another draw
    assert not _same(a.a2a, d.a2a)  # another run seed


def test_keyed_sampler_resumes_with_the_same_keys_and_loader_workers_agree():
    from training.batching import Collater, MultiTaskDataset, TemperatureSampler
    from training.task import Task

    samples = [_sample(as_structure(molecule(m))) for m in ("CH4", "H2O", "NH3", "CH3OH", "C2H6", "HCOOH")]
    ds = MultiTaskDataset([samples])
    sampler = TemperatureSampler(ds.sizes, seed=5, samples_per_epoch=12, keys=True)
    sampler.set_epoch(1)
    full = list(sampler)
    assert [k for _, k in full] == [(1, 0, j) for j in range(12)]
    sampler.skip(4, epoch=1)
    assert list(sampler) == full[4:]  # a resumed epoch: the same indices with the same keys
    assert [i for i, _ in full] == TemperatureSampler(ds.sizes, seed=5, samples_per_epoch=12).epoch_indices(1).tolist()

    collate = Collater([Task("mol", GraphConfig(cutoff=4.0, max_neighbors=4, pbc=False), set_tags_to=2, head=0,
                             energy=True, forces="direct")], [1, 2],
                       edge_dropout=0.2, seed=0)

    def edges(workers):
        sampler.set_epoch(1)
        dl = torch.utils.data.DataLoader(ds, batch_size=3, sampler=sampler, collate_fn=collate, num_workers=workers)
        return [(b.g.a2a.index.tolist(), b.g.main.index.tolist()) for b in dl]

    assert edges(0) == edges(2)
