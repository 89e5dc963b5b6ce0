"""Per-structure isolation (``on_error="skip"``): a structure that is invalid or becomes invalid keeps its slot as
``{"error": reason, "index": i}`` and every other result is bit-identical to a run without it (predict_many,
iter_predict, relax_many, run_md, phonons)."""

from __future__ import annotations

import types
import warnings

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from jmp_calc import InputError, JMPCalculator
from jmp_calc.simulate import phonons, relax_many, run_md


@pytest.fixture(scope="module")
def calc():
    return JMPCalculator()  # the default model: two heads, chosen per structure


def _small(i: int) -> Atoms:
    """Tiny structures of both heads' kinds (2-3 atoms, open boundaries: cheap graphs), all different."""
    rng = np.random.default_rng(i)
    kind = i % 4
    if kind == 0:
        a = Atoms("Cu2", positions=[[0, 0, 0], [2.4 + 0.2 * rng.random(), 0.1 * rng.random(), 0]])
    elif kind == 1:
        a = Atoms("CO", positions=[[0, 0, 0], [1.1 + 0.1 * rng.random(), 0, 0]])
    elif kind == 2:
        a = Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
        a.rattle(0.03, seed=i)
    else:
        a = Atoms("AgCu", positions=[[0, 0, 0], [2.5 + 0.2 * rng.random(), 0.1 * rng.random(), 0]])
    return a


def _poisoned() -> dict[int, object]:
    """Ten structures that cannot be evaluated, each for another reason."""
    coincident = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 0.01]])
    nan = Atoms("Cu2", positions=[[0, 0, 0], [np.nan, 0, 0]])
    flat = Atoms("Cu", cell=[[2.5, 0, 0], [0, 2.5, 0], [0, 0, 0]], pbc=True)
    inf_cell = Atoms("Cu", cell=np.diag([np.inf, 3, 3]), pbc=True)
    z0 = Atoms(numbers=[0, 29], positions=[[0, 0, 0], [2.5, 0, 0]])
    z200 = {"numbers": [200, 29], "positions": [[0, 0, 0], [2.5, 0, 0]]}
    empty = Atoms()
    not_a_structure = "Cu2.xyz"
    close_image = Atoms("Cu", cell=np.diag([0.05, 5, 5]), pbc=True)
    close_pair = Atoms("CO", positions=[[0, 0, 0], [0.05, 0, 0]])
    bad = [coincident, nan, flat, inf_cell, z0, z200, empty, not_a_structure, close_image, close_pair]
    slots = [3, 117, 250, 251, 400, 512, 640, 777, 901, 999]
    return dict(zip(slots, bad))


def _same(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_predict_many_1000_structures_10_poisoned(calc):
    """990 results bit-identical to the run without the 10 poisoned structures, 10 error records in their slots."""
    clean = [_small(i) for i in range(1000)]
    poison = _poisoned()
    mixed = [poison.get(i, a) for i, a in enumerate(clean)]
    good = [a for i, a in enumerate(mixed) if i not in poison]
    ref = calc.potential.predict_many(good, max_atoms=1500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # element warnings of the poisoned ones
        # streamed from a generator (predict_many is list(iter_predict(...)))
        out = list(calc.potential.iter_predict(iter(mixed), max_atoms=1500, on_error="skip"))
    assert len(out) == 1000
    errors = [r for r in out if "error" in r]
    assert [r["index"] for r in errors] == sorted(poison) and all(r["error"] for r in errors)
    assert "closer than" in out[3]["error"] and "NaN" in out[117]["error"] and "singular" in out[250]["error"]
    assert "atomic numbers" in out[400]["error"] and "no atoms" in out[640]["error"]
    assert "TypeError" in out[777]["error"]
    others = [r for i, r in enumerate(out) if i not in poison]
    assert len(others) == 990 and all(_same(a, b) for a, b in zip(others, ref))
    with pytest.raises(InputError, match="closer than"):  # the default stays "raise"
        calc.potential.predict_many(mixed[:10])
    with pytest.raises(InputError, match="on_error must be"):
        calc.potential.predict_many(mixed[:2], on_error="ignore")


def test_calculator_predict_many_skips_too(calc):
    mixed = [_small(0), Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 0]]), bulk("Cu", "fcc", a=3.62), None]
    out = calc.predict_many(mixed, on_error="skip")
    assert out[1] == {"error": out[1]["error"], "index": 1} and "closer than" in out[1]["error"]
    assert out[3]["index"] == 3 and "TypeError" in out[3]["error"]
    assert _same(out[2], calc.predict_many([mixed[0], mixed[2]])[1]) and "stress" in out[2]


class _NaNFor:
    """The potential's results, with NaN energies for structures of ``n_atoms`` atoms (a model that fails on
    them): the others must come out as in a run without them."""

    def __init__(self, potential, n_atoms: int):
        self.potential, self.n_atoms = potential, n_atoms

    def __call__(self, g, props, head=None):
        res = dict(self.potential.__class__.predict_tensors(self.potential, g, props, head=head))
        bad = (g.natoms == self.n_atoms).to(res["energy"].device)
        res["energy"] = torch.where(bad, torch.full_like(res["energy"], float("nan")), res["energy"])
        return res


def test_nonfinite_results_are_isolated_with_the_batches_of_a_run_without_them(calc, monkeypatch):
    structs = [_small(i) for i in range(60)]
    structs[7] = molecule("CH3OH")  # 6 atoms: the only ones with NaN energies
    structs[30] = molecule("CH3OH")
    structs[30].rattle(0.02, seed=1)
    good = [a for i, a in enumerate(structs) if i not in (7, 30)]
    ref = calc.potential.predict_many(good, max_atoms=40)
    monkeypatch.setattr(calc.potential, "predict_tensors", _NaNFor(calc.potential, 6))
    out = calc.potential.predict_many(structs, max_atoms=40, on_error="skip")
    assert out[7] == {"error": "the model gave non-finite energy", "index": 7} and out[30]["index"] == 30
    assert all(_same(a, b) for a, b in zip([r for i, r in enumerate(out) if i not in (7, 30)], ref))
    with pytest.raises(InputError, match=r"structure 7 \(CH4O\): the model gave non-finite energy"):
        calc.potential.predict_many(structs, max_atoms=40)


def test_relax_many_invalid_from_the_start(calc):
    structs = [_small(i) for i in range(8)]
    structs[2] = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 0.05]])
    structs[6] = Atoms("Cu2", positions=[[0, 0, 0], [np.inf, 0, 0]])
    ref_atoms = [a.copy() for i, a in enumerate(structs) if i not in (2, 6)]
    ref = relax_many(ref_atoms, calc, fmax=0.05, steps=20)
    work = [a.copy() for a in structs]
    out = relax_many(work, calc, fmax=0.05, steps=20, on_error="skip")
    assert out[2]["index"] == 2 and "closer than" in out[2]["error"] and "NaN or inf" in out[6]["error"]
    kept = [i for i in range(8) if i not in (2, 6)]
    assert [out[i] for i in kept] == ref
    assert all(np.array_equal(work[i].positions, r.positions) for i, r in zip(kept, ref_atoms))
    with pytest.raises(InputError, match="closer than"):
        relax_many([a.copy() for a in structs], calc, steps=2)


class _Squeeze:
    """A potential whose forces pull the atoms of one structure (its first atom is He) together, hard."""

    def __init__(self, potential):
        self.potential = potential

    def __getattr__(self, name):
        return getattr(self.potential, name)

    def predict(self, structures, properties=("energy", "forces"), graphs=None):
        out = self.potential.predict(structures, properties=properties, graphs=graphs)
        for s, r in zip(structures, out):
            z = s.get_atomic_numbers() if hasattr(s, "get_atomic_numbers") else s.numbers
            if z[0] == 2:
                d = s.positions[1] - s.positions[0] if hasattr(s, "positions") else None
                r["forces"] = np.array([d, -d]) * 50.0
        return out


def test_relax_many_a_structure_that_becomes_invalid(calc):
    """Two atoms pushed closer than the validation limit during the relaxation: that structure stops with its
    reason, the others converge."""
    structs = [_small(i) for i in range(6)] + [Atoms("HeCu", positions=[[0, 0, 0], [2.0, 0, 0]])]
    fake = types.SimpleNamespace(potential=_Squeeze(calc.potential))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # He is outside the model's elements
        out = relax_many(structs, fake, fmax=0.05, steps=200, on_error="skip")
    assert out[6]["index"] == 6 and "closer than 0.1 A" in out[6]["error"]
    assert all(r["converged"] for r in out[:6])


def test_run_md_skips_invalid_replicas(calc):
    reps = [_small(i) for i in range(8)]
    reps[5] = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 0.0]])
    ref = run_md([a.copy() for i, a in enumerate(reps) if i != 5], calc, steps=5, timestep_fs=0.5)
    out = run_md([a.copy() for a in reps], calc, steps=5, timestep_fs=0.5, on_error="skip")
    assert out[5]["index"] == 5 and out[5]["step"] == 0 and "closer than" in out[5]["error"]
    for a, b in zip([r for i, r in enumerate(out) if i != 5], ref):
        assert all(np.array_equal(a[k], b[k]) for k in ("potential", "kinetic", "total"))


def test_phonons_of_a_list_skip_what_cannot_be_done(calc):
    cu = bulk("Cu", "fcc", a=3.6)
    out = phonons([cu, molecule("H2O"), cu.copy()], calc, supercell=(2, 2, 2), on_error="skip")
    assert out[1]["index"] == 1 and "periodic" in out[1]["error"]
    alone = phonons(cu, calc, supercell=(2, 2, 2))
    assert np.array_equal(out[0].force_constants, alone.force_constants)
    assert np.array_equal(out[2].force_constants, alone.force_constants)
    with pytest.raises(InputError, match="periodic"):
        phonons(molecule("H2O"), calc)


def test_a_collapsing_cell_stops_a_cell_relaxation(calc):
    """relax_many(cell=True) checks each step's volume against the start: under a quarter is a collapse."""
    from jmp_calc.simulate.relax import evaluate_isolated

    cells = [bulk("Cu", "fcc", a=3.62), bulk("Ag", "fcc", a=4.09)]
    v0 = [cells[0].get_volume(), 5 * cells[1].get_volume()]  # as if Ag had shrunk to a fifth of its volume
    errors = {}
    out = evaluate_isolated(calc.potential, cells, [0, 1], ("energy", "forces", "stress"), True, errors, volumes=v0)
    assert list(out) == [0] and errors[1].startswith("the cell collapsed: volume")
    with pytest.raises(InputError, match=r"structure 1 \(Ag\): the cell collapsed"):
        evaluate_isolated(calc.potential, cells, [0, 1], ("energy", "forces"), False, {}, volumes=v0)
