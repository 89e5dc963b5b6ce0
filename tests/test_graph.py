"""Neighbour list, JMP graph rules and the triplet/quadruplet/id_swap index sets, checked against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import add_adsorbate, bulk, fcc111, molecule
from ase.neighborlist import neighbor_list as ase_neighbor_list

from jmp_calc.config import GraphConfig
from jmp_calc.graph import build_structure_graphs, collate, neighbor_list
from jmp_calc.graph.indices import quadruplets, reverse_edges, tile_rows, triplets


def _edge_set(src, dst, off, d=None):
    return {(int(s), int(t), *map(int, o)) for s, t, o in zip(src, dst, off)}


def _ase_edges(atoms, cutoff):
    i, j, S, d = ase_neighbor_list("ijSd", atoms, cutoff)
    keep = d > 0.01
    # ASE: vector = x_j - x_i + S @ cell; ours: target i, source j, offset S
    return _edge_set(j[keep], i[keep], S[keep]), np.sort(d[keep])


CASES = {
    "triclinic": lambda: Atoms("CuAu2", scaled_positions=[[0, 0, 0], [0.3, 0.4, 0.6], [0.7, 0.1, 0.2]],
                               cell=[[3.0, 0, 0], [1.2, 2.8, 0], [0.5, 0.9, 3.4]], pbc=True),
    "slab_partial_pbc": lambda: fcc111("Pt", (2, 2, 3), vacuum=6.0),  # pbc = T, T, F
    "tiny_cell_many_images": lambda: bulk("Cu", "fcc", a=3.6),  # 1 atom, cell << cutoff
    "molecule": lambda: molecule("CH3CH2OH"),
    "1d_wire": lambda: Atoms("C2", positions=[[0, 0, 0], [0.7, 0.2, 1.3]], cell=[10, 10, 2.6],
                             pbc=[False, False, True]),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("cutoff", [5.0, 12.0])
def test_neighbor_list_matches_ase(case, cutoff):
    atoms = CASES[case]()
    src, dst, off, dist = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
    ref, ref_d = _ase_edges(atoms, cutoff)
    assert _edge_set(src, dst, off) == ref
    np.testing.assert_allclose(np.sort(dist), ref_d, atol=1e-9)
    # our vector convention: pos[t] - pos[s] - offset @ cell has length dist
    vec = atoms.positions[dst] - atoms.positions[src] - off @ atoms.cell.array
    np.testing.assert_allclose(np.linalg.norm(vec, axis=1), dist, atol=1e-9)


def test_isolated_atom_and_empty():
    src, dst, off, dist = neighbor_list(np.zeros((1, 3)), np.zeros((3, 3)), False, 6.0)
    assert len(src) == 0
    g = build_structure_graphs(np.array([[0.0, 0, 0], [20.0, 0, 0]]), np.zeros((3, 3)), [False] * 3,
                               np.array([2, 2]), GraphConfig(cutoff=8.0), [1, 2])
    assert len(g.main) == len(g.a2a) == 0
    b = collate([g], [np.array([[0.0, 0, 0], [20.0, 0, 0]])], [np.array([1, 1])], [np.zeros((3, 3))])
    assert b.trip_e2e.inp.numel() == 0 and b.quad.out.numel() == 0


def _slab():
    slab = fcc111("Cu", size=(2, 2, 3), vacuum=7.0)
    add_adsorbate(slab, "O", 1.5, "fcc")
    slab.positions += np.random.default_rng(0).normal(0, 0.05, slab.positions.shape)
    tags = slab.get_tags()
    tags[tags > 1] = 0
    tags[-1] = 2
    return slab, tags


def test_knn_and_symmetrisation_rules():
    slab, tags = _slab()
    cfg = GraphConfig(cutoff=12.0, max_neighbors=30)
    g = build_structure_graphs(slab.positions, slab.cell.array, slab.pbc, tags, cfg, [1, 2])
    src, dst, off, dist = neighbor_list(slab.positions, slab.cell.array, slab.pbc, 12.0)
    n = len(slab)
    # k nearest per target atom for each capped graph
    for name, k in (("a2ee2a", 20), ("a2a", 1000)):
        e = getattr(g, name)
        for a in range(n):
            mine = np.sort(e.dist[e.dst == a])
            alld = np.sort(dist[dst == a])[:k]
            np.testing.assert_allclose(mine, alld)
    # qint: 8 nearest, then keep edges touching a tag-1/2 atom
    ok = np.isin(tags, [1, 2])
    assert np.all(ok[g.qint.src] | ok[g.qint.dst])
    # main: pair {a<b} present iff b chose a among its 30 nearest; symmetric
    chosen = set()
    for b in range(n):
        idx = np.nonzero(dst == b)[0]
        idx = idx[np.lexsort((src[idx], dist[idx]))][:30]
        chosen |= {(int(src[i]), b, *map(int, off[i])) for i in idx}
    expected = {e for e in chosen if e[0] < e[1] or (e[0] == e[1] and tuple(e[2:]) < (0, 0, 0))}
    expected |= {(t, s, -ox, -oy, -oz) for s, t, ox, oy, oz in expected}
    assert _edge_set(g.main.src, g.main.dst, g.main.offset) == expected
    assert np.all(np.diff(g.main.dst) >= 0), "graphs must be sorted by target"


def _brute_triplets(in_e, out_e):
    res = set()
    for o, (cs, ca, co) in enumerate(out_e):
        for i, (bs, ba, bo) in enumerate(in_e):
            if ba == ca and not (bs == cs and bo == co):
                res.add((i, o))
    return res


def _edges(es):
    return [(int(s), int(t), tuple(map(int, o))) for s, t, o in zip(es.src, es.dst, es.offset)]


def test_triplets_and_quadruplets_brute_force():
    slab, tags = _slab()
    g = build_structure_graphs(slab.positions, slab.cell.array, slab.pbc, tags, GraphConfig(cutoff=6.0,
                               max_neighbors=12), [1, 2])
    n = len(slab)
    m, q, a = g.main, g.qint, g.a2ee2a
    t = triplets(m.src, m.dst, m.offset, m.src, m.dst, m.offset, n)
    assert set(zip(t.inp.tolist(), t.out.tolist())) == _brute_triplets(_edges(m), _edges(m))
    assert np.all(np.diff(t.out) >= 0)
    # out_agg enumerates each output edge's triplets 0..k-1
    for o in np.unique(t.out):
        assert sorted(t.out_agg[t.out == o].tolist()) == list(range(int((t.out == o).sum())))
    t2 = triplets(a.src, a.dst, a.offset, m.src, m.dst, m.offset, n)
    assert set(zip(t2.inp.tolist(), t2.out.tolist())) == _brute_triplets(_edges(a), _edges(m))

    qd = quadruplets(m.src, m.dst, m.offset, q.src, q.dst, q.offset, n)
    me, qe = _edges(m), _edges(q)
    brute = set()
    for ca, (c, a_, oc) in enumerate(me):  # c -> a
        for ba, (b, a2, ob) in enumerate(qe):  # b -> a
            if a2 != a_ or (b == c and ob == oc):
                continue
            for db, (d, b2, od) in enumerate(me):  # d -> b
                if b2 != b or (d == a_ and tuple(np.add(od, ob)) == (0, 0, 0)):
                    continue
                off_cd = tuple(np.add(od, ob) - np.array(oc))
                if d == c and off_cd == (0, 0, 0):
                    continue
                brute.add((ca, ba, db))
    ours = {(int(qd.out[i]), int(qd.tin_out[qd.trip_in_to_quad[i]]), int(qd.tin_in[qd.trip_in_to_quad[i]]))
            for i in range(len(qd.out))}
    assert len(ours) == len(qd.out)
    assert ours == brute
    # the output triplet of each quadruplet uses the same qint edge as its input triplet
    assert np.array_equal(qd.tout_in[qd.trip_out_to_quad], qd.tin_out[qd.trip_in_to_quad])


def test_reverse_edges():
    slab, tags = _slab()
    g = build_structure_graphs(slab.positions, slab.cell.array, slab.pbc, tags, GraphConfig(), [1, 2])
    m = g.main
    rev = reverse_edges(m.src, m.dst, m.offset, len(slab))
    assert np.array_equal(m.src[rev], m.dst) and np.array_equal(m.dst[rev], m.src)
    assert np.array_equal(m.offset[rev], -m.offset)
    assert np.array_equal(rev[rev], np.arange(len(rev)))


def test_batch_is_disjoint_union():
    slab, tags = _slab()
    mol = molecule("H2O")
    cfg12, cfg8 = GraphConfig(cutoff=12.0), GraphConfig(cutoff=8.0, pbc=False)
    g1 = build_structure_graphs(slab.positions, slab.cell.array, slab.pbc, tags, cfg12, [1, 2])
    g2 = build_structure_graphs(mol.positions, np.zeros((3, 3)), [False] * 3, np.full(3, 2), cfg8, [1, 2])
    b = collate([g1, g2], [slab.positions, mol.positions], [slab.numbers, mol.numbers],
                [slab.cell.array, np.zeros((3, 3))])
    assert b.main.num_edges == len(g1.main) + len(g2.main)
    n1 = len(slab)
    idx = b.main.index.numpy()
    assert np.all((idx[0] < n1) == (idx[1] < n1)), "no edge crosses structures"
    assert b.trip_e2e.inp.numel() == sum(
        len(triplets(g.main.src, g.main.dst, g.main.offset, g.main.src, g.main.dst, g.main.offset, g.n_atoms).inp)
        for g in (g1, g2))


def test_all_zero_tags_treated_as_tag_2():
    from jmp_calc.graph.structures import prepare_tags

    assert prepare_tags(np.zeros(4, dtype=int), None).tolist() == [2, 2, 2, 2]
    assert prepare_tags(np.array([0, 1, 2]), None).tolist() == [0, 1, 2]
    assert prepare_tags(np.array([0, 1, 2]), 2).tolist() == [2, 2, 2]


def test_tie_at_kth_neighbour_is_deterministic():
    """Perfect fcc: 12 equidistant nearest neighbours; a cut at 8 must pick the same ones every time."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    cfg = GraphConfig(cutoff=6.0, max_neighbors=30)
    gs = [build_structure_graphs(atoms.positions, atoms.cell.array, atoms.pbc, np.full(len(atoms), 2), cfg, [1, 2])
          for _ in range(3)]
    for g in gs[1:]:
        for name in ("main", "qint", "a2ee2a"):
            assert _edge_set(getattr(g, name).src, getattr(g, name).dst, getattr(g, name).offset) == _edge_set(
                getattr(gs[0], name).src, getattr(gs[0], name).dst, getattr(gs[0], name).offset)
    assert gs[0].truncated and gs[0].kth_gap == 0.0


@pytest.mark.parametrize("a2a_cap", [None, 6])
def test_geometry_union_covers_every_graph(a2a_cap):
    """The batch's edge union (``geo_index``) holds every edge of the four graphs once; ``EdgeSet.geo`` points at the
    same (src, dst, image) and the model's geometry computed once on it equals the per-graph geometry exactly.
    A capped a2a graph (6 neighbours < the 10 of main) misses reverse main edges: they are appended."""
    import torch

    from jmp_calc.model.backbone import GemNetOCBackbone, edge_geometry

    cfg = GraphConfig(cutoff=6.0, max_neighbors=10, max_neighbors_a2a=a2a_cap)
    slab, tags = _slab()
    structs = [bulk("Cu", "fcc", a=3.6), molecule("CH3CH2OH"), slab]
    for s in structs[:2]:
        s.rattle(0.05, seed=1)
    gs = [build_structure_graphs(s.positions, s.cell.array, s.pbc, t, cfg, [1, 2])
          for s, t in zip(structs, [np.full(1, 2), np.full(9, 2), tags])]
    b = collate(gs, [s.positions for s in structs], [s.numbers for s in structs], [s.cell.array for s in structs],
                dtype=torch.float64)
    union = np.concatenate([b.geo_index.numpy().T, b.geo_offset.numpy()], axis=1)
    assert len({tuple(r) for r in union}) == len(union), "union edges are distinct"
    n_a2a = b.a2a.num_edges
    assert b.a2a.geo is None and np.array_equal(union[:n_a2a, :2].T, b.a2a.index.numpy())
    extra = len(union) - n_a2a
    assert (extra > 0) == (a2a_cap is not None)
    geo = GemNetOCBackbone.geometry(type("B", (), {"shift_dtype": None})(), b, b.pos, b.cell)
    for name in ("main", "a2ee2a", "qint", "a2a"):
        es = getattr(b, name)
        sel = np.arange(n_a2a) if es.geo is None else es.geo.numpy()
        rows = np.concatenate([es.index.numpy().T, es.offset.numpy()], axis=1)
        assert np.array_equal(union[sel], rows), name
        d0, v0 = edge_geometry(b.pos, b.cell, b.batch, es.index, es.offset)
        assert torch.equal(geo[name][0], d0) and torch.equal(geo[name][1], v0), name


def _random_edges(rng, n, m, periodic):
    """``m`` distinct random edges (src, dst, image) on ``n`` atoms, sorted by target (as the graph rules give)."""
    rows = {(int(rng.integers(n)), int(rng.integers(n)), *(map(int, rng.integers(-1, 2, 3)) if periodic else (0,) * 3))
            for _ in range(m)}
    rows = sorted(rows, key=lambda r: r[1])
    rows = [r for r in rows if not (r[0] == r[1] and r[2:] == (0, 0, 0))]
    a = np.array(rows, dtype=np.int64).reshape(-1, 5)
    return a[:, 0].copy(), a[:, 1].copy(), a[:, 2:].copy()


def _ref_pad(groups, n_rows, values, sentinel):
    kmax = max([len(g) for g in groups] + [0])
    pad = np.full((n_rows, kmax), sentinel, dtype=np.int64)
    for r, g in enumerate(groups):
        pad[r, :len(g)] = [values[i] for i in g]
    return pad


def _ref_triplets(i_s, i_d, i_o, o_s, o_d, o_o):
    inp, out, agg, groups = [], [], [], []
    for o in range(len(o_s)):
        mine = [i for i in range(len(i_s)) if i_d[i] == o_d[o] and not (i_s[i] == o_s[o] and
                                                                        np.array_equal(i_o[i], o_o[o]))]
        groups.append(list(range(len(inp), len(inp) + len(mine))))
        inp += mine
        out += [o] * len(mine)
        agg += list(range(len(mine)))
    pad = _ref_pad(groups, len(o_s), np.arange(len(inp)), len(inp))
    return inp, out, agg, pad, np.append(np.array(inp, dtype=np.int64), len(i_s))[pad]


def _ref_quadruplets(m_s, m_d, m_o, q_s, q_d, q_o, n):
    tin = [(d, b) for b in range(len(q_s)) for d in range(len(m_s))
           if m_d[d] == q_s[b] and not (m_s[d] == q_d[b] and not np.any(m_o[d] + q_o[b]))]
    tout = [(b, c) for c in range(len(m_s)) for b in range(len(q_s))
            if q_d[b] == m_d[c] and not (q_s[b] == m_s[c] and np.array_equal(q_o[b], m_o[c]))]
    quads, groups = [], []
    for j, (b, c) in enumerate(tout):
        mine = [i for i, (d, b2) in enumerate(tin) if b2 == b and
                not (m_s[d] == m_s[c] and not np.any(m_o[d] + q_o[b] - m_o[c]))]
        groups.append(list(range(len(quads), len(quads) + len(mine))))
        quads += [(i, j) for i in mine]
    t_in = np.array([i for i, _ in quads], dtype=np.int64)
    # the grid: rows = tiles of up to mt output triplets of one qint edge (output slots) x its input triplets
    n_q = len(q_s)
    ins = [[i for i, (_, b2) in enumerate(tin) if b2 == b] for b in range(n_q)]
    outs = [[j for j, (b2, _) in enumerate(tout) if b2 == b] for b in range(n_q)]
    mt = tile_rows(np.array([len(o) for o in outs], dtype=np.int64), max([len(i) for i in ins] + [0]))
    tiles = [(b, o[t:t + mt]) for b, o in enumerate(outs) for t in range(0, len(o), mt)]
    m_max = max([len(o) for _, o in tiles] + [0])
    slot = {j: r * m_max + i for r, (_, o) in enumerate(tiles) for i, j in enumerate(o)}
    slot_main = np.zeros(len(tiles) * m_max, dtype=np.int64)
    keep = np.zeros((len(tiles), m_max, max([len(i) for i in ins] + [0])), dtype=bool)
    quad_set = set(quads)
    for r, (b, o) in enumerate(tiles):
        for i, j in enumerate(o):
            slot_main[r * m_max + i] = tout[j][1]
            for k, i_in in enumerate(ins[b]):
                keep[r, i, k] = (i_in, j) in quad_set
    pad_in = _ref_pad(ins, n_q, np.arange(len(tin)), len(tin))[[b for b, _ in tiles]].reshape(len(tiles), -1)
    atom_rows = np.searchsorted(np.array([q_d[b] for b, _ in tiles], dtype=np.int64), np.arange(n + 1))
    e_groups = [[j for j, (_, c) in enumerate(tout) if c == e] for e in range(len(m_s))]
    return dict(tin_in=[d for d, _ in tin], tin_out=[b for _, b in tin], tout_in=[b for b, _ in tout],
                tout_out=[c for _, c in tout], out=[tout[j][1] for _, j in quads], trip_in_to_quad=t_in,
                trip_out_to_quad=[j for _, j in quads], row_qint=[b for b, _ in tiles], pad_in=pad_in,
                slot_main=slot_main, keep=keep,
                pad_e=_ref_pad(e_groups, len(m_s), [slot[j] for j in range(len(tout))], len(tiles) * m_max),
                atom_main=np.searchsorted(m_d, np.arange(n + 1)), atom_rows=atom_rows)


@pytest.mark.parametrize("seed", range(6))
def test_index_sets_equal_simple_reference(seed):
    """The vectorised triplet/quadruplet index sets equal, element by element and in order, a loop-by-loop
    reference on random graphs (with and without images, isolated atoms, uneven degrees)."""
    rng = np.random.default_rng(seed)
    n, periodic = int(rng.integers(3, 9)), bool(seed % 2)
    m = _random_edges(rng, n, int(rng.integers(5, 40)), periodic)
    a = _random_edges(rng, n, int(rng.integers(0, 30)), periodic)
    q = _random_edges(rng, n, int(rng.integers(0, 20)), periodic)
    for i_e, o_e in ((m, m), (a, m), (m, a)):
        t = triplets(*i_e, *o_e, n)
        inp, out, agg, pad, pad_in = _ref_triplets(*i_e, *o_e)
        assert t.inp.tolist() == inp and t.out.tolist() == out and t.out_agg.tolist() == agg
        assert t.kmax == pad.shape[1] and np.array_equal(t.pad, pad) and np.array_equal(t.pad_in, pad_in)
    qd = quadruplets(*m, *q, n)
    ref = _ref_quadruplets(*m, *q, n)
    for name, want in ref.items():
        got, want = getattr(qd, name), np.asarray(want, dtype=bool if name == "keep" else np.int64)
        assert got.dtype == want.dtype and np.array_equal(got, want), name  # same shape and values
    # the lists derived from the grid on demand, from the batch's torch tensors (int32) as from numpy
    from jmp_calc.graph.batch import _as_index, _to_torch

    qt = _to_torch(qd, _as_index)
    for name in ("out", "trip_in_to_quad", "trip_out_to_quad"):
        assert np.array_equal(getattr(qt, name).numpy(), np.asarray(ref[name], dtype=np.int64)), name
    assert qt.num_quadruplets == qd.num_quadruplets == len(ref["out"])


def test_tile_rows_pads_uneven_degrees_less():
    """Even degrees (bulk) keep one grid row per qint edge; a few high-degree qint edges among many low-degree ones
    are split into tiles instead of padding every row to the largest, and the padded grid shrinks."""
    from jmp_calc.graph.indices import TILE_OVERHEAD

    assert tile_rows(np.full(384, 17), 17) == 17
    assert tile_rows(np.zeros(3, dtype=np.int64), 0) == 1
    counts = np.array([18] * 10 + [3] * 100)
    t = tile_rows(counts, 18)

    def grid(t):
        return int((-(-counts // t) * (t * 18 + TILE_OVERHEAD)).sum())

    assert t < 18 and grid(t) < grid(18)
