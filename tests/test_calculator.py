"""The ASE calculator: eV units from the checkpoint's normalisation, JMP's tag/periodicity rules, gradients."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import add_adsorbate, fcc111, molecule
from conftest import SMALL_CKPT, TINY_CKPT, require_fixtures

from jmp_calc import JMPCalculator
from jmp_calc.config import PRETRAINING_HEADS
from jmp_calc.potential import InputError

STD = {name: (y, f) for name, y, f, _, _ in PRETRAINING_HEADS}


def _atoms(z, name, pbc):
    return Atoms(numbers=z[f"{name}/numbers"], positions=z[f"{name}/positions"], cell=z[f"{name}/cell"], pbc=pbc)


@pytest.mark.parametrize("name,head,pbc", [("cu", "oc20", True), ("cu", "oc22", True), ("ethanol", "ani1x", False),
                                           ("ethanol", "transition1x", False)])
def test_calculator_ev_units_match_reference(fixtures_npz, name, head, pbc):
    z = fixtures_npz
    atoms = _atoms(z, name, pbc)
    t = ["oc20", "oc22", "ani1x", "transition1x"].index(head)
    y_std, f_std = STD[head]
    atoms.calc = JMPCalculator(TINY_CKPT, head=head, dtype="float64", ema=True)
    assert atoms.get_potential_energy() == pytest.approx(z[f"{name}/float64/ema/energy"][t] * y_std, rel=1e-9)
    np.testing.assert_allclose(atoms.get_forces(), z[f"{name}/float64/ema/forces_direct"][:, :, t] * f_std,
                               rtol=1e-7, atol=1e-9)
    atoms.calc = JMPCalculator(TINY_CKPT, head=head, dtype="float64", ema=True, forces="conservative")
    np.testing.assert_allclose(atoms.get_forces(), z[f"{name}/float64/ema/forces_grad"][:, :, t] * y_std,
                               rtol=1e-7, atol=1e-7)


def test_float32_calculator(fixtures_npz):
    z = fixtures_npz
    atoms = _atoms(z, "ethanol", False)
    atoms.calc = JMPCalculator(TINY_CKPT, head="ani1x", dtype="float32", ema=False)
    e = atoms.get_potential_energy()
    assert e == pytest.approx(z["ethanol/float64/raw/energy"][2] * STD["ani1x"][0], rel=1e-5)
    assert atoms.get_forces().dtype == np.float64  # ASE gets float64 arrays whatever the model precision


def _slab(tags_zero=False):
    slab = fcc111("Cu", size=(2, 2, 3), vacuum=7.0)
    add_adsorbate(slab, "O", 1.6, "fcc")
    slab.positions += np.random.default_rng(1).normal(0, 0.03, slab.positions.shape)
    if tags_zero:
        slab.set_tags(0)
    return slab


def test_untagged_structures_count_as_tag_2():
    """The original crashes on all-zero tags (no quadruplets); we treat them as JMP treats non-catalysis data."""
    require_fixtures()
    calc = JMPCalculator(TINY_CKPT, head="oc20", dtype="float64")
    untagged = _slab(tags_zero=True)
    untagged.calc = calc
    e0 = untagged.get_potential_energy()
    tagged2 = _slab()
    tagged2.set_tags(2)
    tagged2.calc = JMPCalculator(TINY_CKPT, head="oc20", dtype="float64")
    assert e0 == pytest.approx(tagged2.get_potential_energy(), rel=1e-12)
    # a slab whose tags are all 0 except none in qint_tags still runs (no quadruplets) -> finite numbers
    bulk_only = _slab()
    bulk_only.set_tags([0] * (len(bulk_only) - 1) + [3])
    bulk_only.calc = calc
    assert np.isfinite(bulk_only.get_potential_energy())


def test_periodicity_from_atoms_pbc():
    require_fixtures()
    slab = _slab()
    assert list(slab.pbc) == [True, True, False]
    calc = JMPCalculator(TINY_CKPT, head="oc20", dtype="float64")
    slab.calc = calc
    e_open = slab.get_potential_energy()
    # 14 A of vacuum > 12 A cutoff: periodic in z gives the same graph and energy
    full = slab.copy()
    full.pbc = True
    full.calc = calc
    assert full.get_potential_energy() == pytest.approx(e_open, rel=1e-12)
    # shrinking the vacuum below the cutoff changes the result only when z is periodic
    thin = slab.copy()
    thin.cell[2, 2] = slab.positions[:, 2].max() + 3.0
    thin.calc = calc
    assert thin.get_potential_energy() == pytest.approx(e_open, rel=1e-12)
    thin.pbc = True
    assert thin.get_potential_energy() != pytest.approx(e_open, rel=1e-6)


@pytest.mark.slow
def test_conservative_forces_and_stress_finite_differences(fixtures_npz):
    # rattled bulk Cu: no ties at the k-th neighbour (gap >= 6e-4 A), so the energy is smooth around it
    atoms = _atoms(fixtures_npz, "cu", True)
    atoms.calc = JMPCalculator(SMALL_CKPT, head="oc20", dtype="float64", ema=False, forces="conservative")
    f = atoms.get_forces()
    h = 1e-5
    rng = np.random.default_rng(0)
    for i in rng.choice(len(atoms), 3, replace=False):
        for k in range(3):
            p = atoms.copy()
            p.calc = atoms.calc
            p.positions[i, k] += h
            ep = p.get_potential_energy()
            p.positions[i, k] -= 2 * h
            em = p.get_potential_energy()
            assert -(ep - em) / (2 * h) == pytest.approx(f[i, k], rel=1e-5, abs=1e-6)
    stress = atoms.get_stress(voigt=False)
    vol = atoms.get_volume()
    for a, b in [(0, 0), (1, 1), (2, 2), (0, 1), (1, 2)]:
        eps = np.zeros((3, 3))
        eps[a, b] = eps[b, a] = h if a != b else h
        energies = []
        for sign in (1, -1):
            p = atoms.copy()
            p.calc = atoms.calc
            p.set_cell(atoms.cell.array @ (np.eye(3) + sign * eps), scale_atoms=True)
            energies.append(p.get_potential_energy())
        d_e = (energies[0] - energies[1]) / (2 * h) / vol
        expected = stress[a, b] * (2 if a != b else 1)
        assert d_e == pytest.approx(expected, rel=1e-4, abs=1e-7)


def test_direct_forces_have_no_stress():
    atoms = molecule("H2O")
    atoms.calc = JMPCalculator(SMALL_CKPT, head="ani1x")
    from ase.calculators.calculator import PropertyNotImplementedError

    with pytest.raises(PropertyNotImplementedError, match="stress"):
        atoms.get_stress()


def test_invariances_float64():
    rng = np.random.default_rng(3)
    atoms = molecule("CH3CH2OH")
    calc = JMPCalculator(SMALL_CKPT, head="ani1x", dtype="float64", forces="conservative")
    atoms.calc = calc
    e, f = atoms.get_potential_energy(), atoms.get_forces()
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    moved = atoms.copy()
    moved.positions = atoms.positions @ q.T + np.array([1.0, -2.0, 0.5])
    moved.calc = calc
    assert moved.get_potential_energy() == pytest.approx(e, rel=1e-12)
    np.testing.assert_allclose(moved.get_forces(), f @ q.T, atol=1e-9)
    perm = rng.permutation(len(atoms))
    shuffled = atoms[perm]
    shuffled.calc = calc
    assert shuffled.get_potential_energy() == pytest.approx(e, rel=1e-12)
    np.testing.assert_allclose(shuffled.get_forces(), f[perm], atol=1e-9)


def test_graph_settings_come_from_the_head():
    """Explicit per-graph caps of a model (the embedded one uses 18/18/12) survive into the calculator."""
    calc = JMPCalculator()  # two heads, chosen per structure: each sub-potential has its head's graph
    assert set(calc.potential.heads) == set(calc.model.head_names)
    for name, settings in calc.potential.heads.items():
        head = calc.model.heads[calc.model.head_index(name)]
        assert settings.graph == head.graph
        assert settings.graph.caps["qint"] == head.graph.caps["qint"] == 12
    over = JMPCalculator(cutoff=4.0)
    for settings in over.potential.heads.values():
        assert settings.graph.cutoff == 4.0 and settings.graph.caps["qint"] == 12
    single = JMPCalculator("jmp-mini-emt")
    assert single.potential.graph == single.model.heads[single.potential.head_idx].graph


def test_graph_overrides_and_errors():
    atoms = molecule("CH3CH2OH")
    base = JMPCalculator(SMALL_CKPT, head="ani1x", dtype="float64")
    small = JMPCalculator(SMALL_CKPT, head="ani1x", dtype="float64", cutoff=2.0, max_neighbors=4)
    atoms.calc = base
    e1 = atoms.get_potential_energy()
    atoms.calc = small
    assert atoms.get_potential_energy() != pytest.approx(e1)
    with pytest.raises(ValueError, match="unknown head 'oc21'"):
        JMPCalculator(SMALL_CKPT, head="oc21")
    with pytest.raises(InputError, match="forces must be"):
        JMPCalculator(SMALL_CKPT, head="oc20", forces="sometimes")
    with pytest.raises(InputError, match="dtype"):
        JMPCalculator(SMALL_CKPT, head="oc20", dtype="float16")
    bad = Atoms("H2", positions=[[0, 0, 0], [np.nan, 0, 0]])
    bad.calc = base
    with pytest.raises(InputError, match="NaN"):
        bad.get_potential_energy()
    empty = Atoms()
    empty.calc = base
    with pytest.raises(InputError, match="no atoms"):
        empty.get_potential_energy()


def test_pretraining_checkpoint_needs_explicit_head():
    with pytest.raises(ValueError, match="choose one of its heads"):
        JMPCalculator(SMALL_CKPT)
    with pytest.warns(UserWarning, match="zero-shot"):
        JMPCalculator(SMALL_CKPT, head="oc20")


def test_no_recomputation_for_unchanged_atoms(monkeypatch):
    atoms = molecule("H2O")
    calc = JMPCalculator(SMALL_CKPT, head="ani1x")
    atoms.calc = calc
    calls = []
    real = calc.potential.predict
    monkeypatch.setattr(calc.potential, "predict", lambda *a, **k: calls.append(1) or real(*a, **k))
    atoms.get_potential_energy()
    atoms.get_forces()
    atoms.get_potential_energy()
    assert len(calls) == 1
    atoms.positions[0, 0] += 0.1
    atoms.get_forces()
    assert len(calls) == 2


def test_deterministic_repeated_results():
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
    atoms.rattle(0.05, seed=2)
    calc = JMPCalculator(deterministic=True)
    props = ("energy", "forces", "stress")
    for batch in ([atoms], [atoms, atoms.copy()]):
        first = calc.potential.predict(batch, properties=props)
        again = calc.potential.predict(batch, properties=props)
        for r1, r2 in zip(first, again):
            assert r1["energy"] == r2["energy"]
            assert np.array_equal(r1["forces"], r2["forces"]) and np.array_equal(r1["stress"], r2["stress"])
    import torch

    assert not torch.are_deterministic_algorithms_enabled()  # global torch state restored


def test_one_model_call_per_state_for_every_property(monkeypatch):
    """energy, free_energy, energies, forces and stress of one state: one model call; an identical state given
    to the potential again reuses its graphs; a moved atom rebuilds them."""
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=3)
    calc = JMPCalculator()  # embedded model: conservative, with stress
    atoms.calc = calc
    calls = []
    pot = calc.potential
    real = pot.predict_tensors
    monkeypatch.setattr(pot, "predict_tensors", lambda *a, **k: calls.append(1) or real(*a, **k))
    e = atoms.get_potential_energy()
    assert atoms.get_potential_energy(force_consistent=True) == e
    assert atoms.get_potential_energies().sum() == pytest.approx(e, rel=1e-5)
    atoms.get_forces()
    atoms.get_stress()
    assert len(calls) == 1
    calc.potential.predict([atoms], properties=("energy",))
    assert calc.potential.graph_reuses == 1
    atoms.positions[0, 0] += 0.01
    atoms.get_stress()
    assert len(calls) == 3 and calc.potential.graph_reuses == 1
