"""Streaming predictions: ``iter_predict`` reads its input lazily, one batch ahead of the results consumed (so memory
does not grow with the number of structures; benchmarks/streaming.py measures it), equals ``predict_many`` and
single calculator calls, and gives stress to 3D-periodic structures only; ``predict_many`` accepts generators."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk, molecule

from jmp_calc import JMPCalculator


@pytest.fixture(scope="module")
def calc():
    return JMPCalculator(dtype="float64")  # the embedded model: conservative forces and stress


def _mixed(n: int):
    out = []
    for i in range(n):
        a = molecule(["H2O", "CH4", "NH3"][i % 3]) if i % 2 else bulk("Cu", "fcc", a=3.6) * (2, 1, 1)
        a.rattle(0.03, seed=i)
        out.append(a)
    return out


def test_iter_predict_reads_one_batch_ahead(calc):
    pulled = []

    def structures():
        for i, a in enumerate(_mixed(12)):
            pulled.append(i)
            yield a

    results = calc.iter_predict(structures(), batch_size=4)
    assert pulled == []  # nothing read before the first result is asked for
    next(results)
    assert len(pulled) == 5  # the first batch and the structure that did not fit in it
    for _ in range(3):
        next(results)
    assert len(pulled) == 5
    next(results)
    assert len(pulled) == 9
    assert len(list(results)) == 7 and len(pulled) == 12


def test_iter_predict_equals_predict_many_and_single_calls(calc):
    structs = _mixed(7)
    streamed = list(calc.iter_predict(iter(structs), batch_size=3, max_atoms=10))
    listed = calc.predict_many(structs)
    assert len(streamed) == len(listed) == 7
    for atoms, s, m in zip(structs, streamed, listed):
        atoms.calc = calc
        assert s["energy"] == pytest.approx(atoms.get_potential_energy(), rel=1e-10, abs=1e-10)
        assert s["energy"] == pytest.approx(m["energy"], rel=1e-10, abs=1e-10)
        np.testing.assert_allclose(s["forces"], atoms.get_forces(), atol=1e-9)
        if atoms.pbc.all():
            np.testing.assert_allclose(s["stress"], atoms.get_stress(), atol=1e-9)
            np.testing.assert_allclose(m["stress"], s["stress"], atol=1e-12)
        else:
            assert "stress" not in s and "stress" not in m


def test_predict_many_accepts_a_generator(calc):
    structs = _mixed(4)
    from_gen = calc.predict_many(a for a in structs)
    assert [r["energy"] for r in from_gen] == pytest.approx([r["energy"] for r in calc.predict_many(structs)])
    assert calc.potential.predict_many(iter(structs[:2]), max_atoms=1)[1]["forces"].shape == (len(structs[1]), 3)
