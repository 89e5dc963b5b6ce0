"""The optional compiled forward (``compile=True``, :mod:`jmp_calc.compile`) and the per-call input checks'
shortcut (:mod:`jmp_calc.validate`).

The compile tests use a tiny random model (one block) on 3-5 atom structures; the compiling ones are marked slow
(one CPU core needs tens of seconds per compilation); the fallback tests are fast.
"""

from __future__ import annotations

import logging
import os
import warnings

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from jmp_calc.compile import CompileOptions, compile_options
from jmp_calc.config import GraphConfig, HeadConfig, tiny
from jmp_calc.errors import InputError
from jmp_calc.model import JMPModel
from jmp_calc.potential import Potential


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    graph = GraphConfig(cutoff=4.0, max_neighbors=12, max_neighbors_a2ee2a=12, max_neighbors_qint=8)
    heads = [HeadConfig(name="x", direct_forces=True, graph=graph, atom_refs={1: -0.5, 6: -2.0, 8: -4.0, 29: -3.0})]
    cfg = tiny(num_blocks=1, absolute_rbf_cutoff=4.0, direct_forces=True, dihedral_basis="smooth")
    return JMPModel(cfg, heads).double()


def _structures():
    mol = molecule("CH3OH")[:5]
    mol.rattle(0.05, seed=3)
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)  # 4 atoms
    cu.rattle(0.05, seed=4)
    return mol, cu


def _compare(a: dict, b: dict, tol: float) -> None:
    for k in ("energy", "forces", "stress"):
        if k in a:
            x, y = np.asarray(a[k]), np.asarray(b[k])
            assert np.abs(x - y).max() <= tol * max(np.abs(y).max(), 1e-12), k


class _Raises:
    """A torch.compile backend that fails, as a backend without a working compiler does."""

    def __init__(self):
        self.calls = 0

    def __call__(self, gm, example_inputs):
        self.calls += 1
        raise RuntimeError("no compiler here")


def _check_falls_back(pot: Potential, eager: Potential, props, attempts) -> None:
    mol, cu = _structures()
    with pytest.warns(RuntimeWarning, match="torch.compile of the model failed .*no compiler here.*eagerly"):
        (r,) = pot.predict([cu], properties=props)
    assert attempts() == 1 and "no compiler here" in pot.compiled.failed
    (ref,) = eager.predict([cu], properties=props)
    for k in props:
        np.testing.assert_array_equal(r[k], ref[k])  # the eager path: bit-identical
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning, no second attempt
        r2 = pot.predict([mol, mol.copy()], properties=("energy", "forces"))
    assert attempts() == 1
    ref2 = eager.predict([mol, mol.copy()], properties=("energy", "forces"))
    for x, y in zip(r2, ref2):
        np.testing.assert_array_equal(x["forces"], y["forces"])


@pytest.mark.parametrize("forces", ["conservative", "direct"])
def test_compile_failing_at_first_call_falls_back_with_one_warning(model, forces, monkeypatch):
    """What a missing C++ compiler or a backend error looks like to the caller: the compiled function raises at
    its first call (where torch.compile compiles). Simulated, so the test needs no Dynamo trace."""
    calls = []

    def compile_that_fails(fn, **kwargs):
        def compiled(*args):
            calls.append(kwargs)
            raise RuntimeError("backend='inductor' raised:\nInvalidCxxCompiler: no compiler here")
        return compiled

    monkeypatch.setattr(torch, "compile", compile_that_fails)
    eager = Potential(model, forces=forces, dtype="float64")
    pot = Potential(model, forces=forces, dtype="float64", compile=True)
    props = ("energy", "forces", "stress") if forces == "conservative" else ("energy", "forces")
    _check_falls_back(pot, eager, props, lambda: len(calls))
    assert {k: calls[0][k] for k in ("backend", "mode", "dynamic")} == {"backend": "inductor", "mode": None,
                                                                      "dynamic": True}
    assert calls[0]["options"] == {"guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe}
    assert "options" not in CompileOptions(skip_module_guards=False).compile_kwargs()


@pytest.mark.slow
def test_failing_backend_falls_back_to_eager_with_one_warning(model):
    """The same through a real Dynamo trace with a backend that raises (Dynamo wraps its error)."""
    torch._dynamo.reset()
    backend = _Raises()
    eager = Potential(model, forces="conservative", dtype="float64")
    pot = Potential(model, forces="conservative", dtype="float64", compile=CompileOptions(backend=backend))
    _check_falls_back(pot, eager, ("energy", "forces", "stress"), lambda: backend.calls)


def test_torch_compile_missing_falls_back(model, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("Dynamo is not supported on this Python")

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(RuntimeWarning, match="failed .*Dynamo is not supported"):
        pot = Potential(model, forces="conservative", dtype="float64", compile=True)
    mol, _ = _structures()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (r,) = pot.predict([mol])
    (ref,) = Potential(model, forces="conservative", dtype="float64").predict([mol])
    np.testing.assert_array_equal(r["forces"], ref["forces"])
    assert pot.compiled.warmup_s is None


def test_compile_option_values():
    assert compile_options(False) is None and compile_options(None) is None
    assert compile_options(True) == CompileOptions()
    opts = CompileOptions(mode="max-autotune", dynamic=False)
    assert compile_options(opts) is opts
    with pytest.raises(InputError, match="compile must be True, False or a jmp_calc.compile.CompileOptions"):
        compile_options("yes")


def _graph_count() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("JMP_COMPILE_TESTS"),
                    reason="a full inductor compilation (~2 min on one core); set JMP_COMPILE_TESTS=1 to run it")
@pytest.mark.xfail(strict=True, reason="known failures (2026-12-02): inductor raises an AssertionError compiling the "
                   "energy + forces + stress forward of this tiny model, so compile=True falls back to eager; and "
                   "in a clean clone the growing 4-atom cell kept one graph size, (48, 3744, 528)")
def test_compiled_equals_eager_and_compiles_once_over_changing_sizes(model, caplog):
    """-dE/dx forces and stress through the compiled forward agree with eager to 1e-5 (relative, float32), and a
    rattle sequence whose edge/triplet/quadruplet counts change every step compiles once (one Dynamo graph)."""
    torch._dynamo.reset()
    eager = Potential(model, forces="conservative", dtype="float32")
    pot = Potential(model, forces="conservative", dtype="float32", compile=True)
    cell = bulk("Cu", "fcc", a=3.6, cubic=True)  # 4 atoms
    rng = np.random.default_rng(0)
    sizes, before = set(), _graph_count()
    with caplog.at_level(logging.INFO, logger="jmp_calc.compile"):
        for step in range(6):
            a = cell.copy()
            a.set_cell(a.cell * (1 + 0.04 * step), scale_atoms=True)  # the cell grows: neighbours leave the cutoff
            a.positions += rng.normal(0, 0.08, a.positions.shape)
            g = pot.batch([a])
            sizes.add((g.main.num_edges, g.quad.num_quadruplets, int(g.trip_e2e.inp.shape[0])))
            (r,) = pot.predict([a], properties=("energy", "forces", "stress"))
            (ref,) = eager.predict([a], properties=("energy", "forces", "stress"))
            _compare(r, ref, 1e-5)
    assert len(sizes) >= 4, sizes  # the sequence did change the counts
    assert _graph_count() - before == 1, "one compilation for every size"
    assert pot.compiled.failed is None and len(pot.compiled.compile_times) == 1
    assert pot.compiled.warmup_s > 0
    assert any("compiled 1 new graph(s)" in m and "warm-up" in m for m in caplog.messages)


# ---------------------------------------------------------------------------------------------- input checks
def _message(check, *args) -> str | None:
    try:
        check(*args)
    except InputError as exc:
        return str(exc)
    return None


def test_direct_pair_check_decides_as_the_neighbour_search():
    """The minimum-image shortcut of the close-pair check (small structures) accepts and rejects exactly the
    structures vesin's 0.5 A search does, with the same message, for skewed cells, every periodicity and pairs
    placed around 0.1 A, also across periodic images."""
    from jmp_calc import validate as V
    from jmp_calc.graph.geometry import cell_heights

    rng = np.random.default_rng(1)
    outcomes, fast = {True: 0, False: 0}, 0
    for _ in range(200):
        n = int(rng.integers(1, 12))
        pbc = rng.random(3) < 0.6
        cell = np.diag(rng.uniform(0.25, 4, 3)) + rng.normal(0, 0.8, (3, 3))
        if rng.random() < 0.3:
            cell[~pbc] = 0.0  # zero vectors along open directions
        pos = rng.uniform(-3, 6, (n, 3))
        if n > 1 and rng.random() < 0.6:  # a pair at ~0.05-0.15 A, possibly between images
            pos[1] = pos[0] + (rng.integers(-2, 3, 3) * pbc) @ cell + \
                rng.normal(0, 1, 3) * rng.uniform(0.05, 0.15) / np.sqrt(3)
        h = cell_heights(cell, pbc) if pbc.any() else None
        if h is not None and h[pbc].min() < V.MIN_CELL_HEIGHT:
            continue

        ref = _message(V._vesin_check, pos, cell, pbc)
        assert _message(V._check_distances, pos, cell, pbc, h) == ref
        outcomes[ref is None] += 1
        fast += V._no_close_pair(pos, cell, pbc, h)
    assert outcomes[True] > 70 and outcomes[False] > 40, outcomes
    assert fast > 0.9 * outcomes[True]  # the shortcut decided most accepted structures
    assert fast <= outcomes[True]  # and never accepted a rejected one


def test_check_structure_rejects_close_pairs_of_small_and_large_structures():
    from jmp_calc.graph.structures import as_structure
    from jmp_calc.validate import DIRECT_PAIR_CHECK_MAX_ATOMS, check_structure

    for reps in (1, 5):  # 4 and 500 atoms: the direct check and the vesin search
        a = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(reps)
        assert (len(a) <= DIRECT_PAIR_CHECK_MAX_ATOMS) == (reps == 1)
        check_structure(as_structure(a), 100)
        a.positions[-1] = a.positions[0] + a.cell[0] + 0.05  # atom 0's image, 0.087 A away
        with pytest.raises(InputError, match=r"1 pair\(s\) of atoms closer than 0.1 A"):
            check_structure(as_structure(a), 100)
    with pytest.raises(InputError, match="closer than 0.1 A"):
        check_structure(as_structure(Atoms("H2", [[0, 0, 0], [0, 0, 0.05]])), 100)
