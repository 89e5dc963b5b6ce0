"""Per-structure head choice (model card ``head_rules``, jmp_calc.routing): a two-head model routes molecules and
metal structures to different heads, exactly as the single-head potentials would evaluate them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, fcc111, molecule

from jmp_calc import JMPCalculator, ModelCardError
from jmp_calc.card import ModelCard
from jmp_calc.config import GraphConfig, HeadConfig, tiny
from jmp_calc.model import JMPModel
from jmp_calc.potential import InputError, Potential
from jmp_calc.routing import FixedHead, HeadRules

RULES = [{"head": "molecules", "only_elements": [1, 6, 7, 8]}, {"head": "surfaces"}]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    graph = GraphConfig(cutoff=5.0, max_neighbors=18, max_neighbors_a2ee2a=18, max_neighbors_qint=12)
    heads = [HeadConfig(name="surfaces", direct_forces=False, graph=graph, atom_refs={29: -3.0, 8: -1.0}),
             HeadConfig(name="molecules", direct_forces=False, graph=graph, atom_refs={1: -0.5, 6: -2.0, 8: -4.0},
                        set_tags_to=2)]
    card = ModelCard.from_dict({"head_rules": RULES, "forces": {"surfaces": "conservative",
                                                                 "molecules": "conservative"}})
    m = JMPModel(tiny(absolute_rbf_cutoff=5.0, direct_forces=False, dihedral_basis="smooth"), heads, card=card)
    return m.double()


def _systems():
    slab = fcc111("Cu", (2, 2, 3), vacuum=6.0)
    slab.set_tags(np.repeat([3, 2, 1], 4))
    mol = molecule("CH3OH")
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    slab.rattle(0.05, seed=1)  # no ties at the neighbour caps
    cu.rattle(0.05, seed=2)
    return [mol, slab, molecule("H2O"), cu]


def test_routes_by_elements(model):
    pot = Potential(model, dtype="float64")
    assert isinstance(pot.selector, HeadRules) and list(pot.heads) == ["molecules", "surfaces"]
    assert [pot.route(a) for a in _systems()] == ["molecules", "surfaces", "molecules", "surfaces"]
    oxide_on_cu = fcc111("Cu", (2, 2, 2), vacuum=5.0) + molecule("O2")  # any non-organic element -> surfaces
    assert pot.route(oxide_on_cu) == "surfaces"


def test_results_equal_the_single_head_potentials(model):
    routed = Potential(model, dtype="float64")
    single = {h: Potential(model, head=h, dtype="float64") for h in ("molecules", "surfaces")}
    systems = _systems()
    mixed = routed.predict(systems, properties=("energy", "forces"))
    streamed = list(routed.iter_predict(iter(systems), batch_size=3))
    for a, r, st in zip(systems, mixed, streamed):
        (ref,) = single[routed.route(a)].predict([a])
        assert r["energy"] == pytest.approx(ref["energy"], abs=1e-10)
        np.testing.assert_allclose(r["forces"], ref["forces"], atol=1e-10)
        assert st["energy"] == pytest.approx(ref["energy"], abs=1e-10)
    # the heads really differ: evaluating the molecule with the surfaces head gives another energy
    (other,) = single["surfaces"].predict([systems[0]])
    assert abs(other["energy"] - mixed[0]["energy"]) > 1e-3


def test_calculator_routes_and_explicit_head_overrides(model):
    mol, slab, _, cu = _systems()
    calc = JMPCalculator(model, dtype="float64")
    assert isinstance(calc.potential.selector, HeadRules) and "stress" in calc.implemented_properties
    mol.calc = calc
    e_routed = mol.get_potential_energy()
    (ref,) = Potential(model, head="molecules", dtype="float64").predict([mol])
    assert e_routed == pytest.approx(ref["energy"], abs=1e-10)
    cu.calc = calc
    assert cu.get_stress().shape == (6,)
    fixed = JMPCalculator(model, head="surfaces", dtype="float64")
    assert fixed.potential.selector == FixedHead("surfaces") and list(fixed.potential.heads) == ["surfaces"]
    mol2 = mol.copy()
    mol2.calc = fixed
    assert abs(mol2.get_potential_energy() - e_routed) > 1e-3
    many = calc.predict_many([mol, slab, cu])
    assert "stress" in many[2] and "stress" not in many[0]


def test_mixed_torch_batch_is_a_clear_error(model):
    pot = Potential(model, dtype="float64")
    with pytest.raises(InputError, match="mixes structures for heads"):
        pot.batch(_systems()[:2])
    g = pot.batch([_systems()[0]])
    with pytest.raises(InputError, match="chooses one of the heads"):  # no hidden 'current head' state
        pot.predict_tensors(g, {"energy"})
    head = pot.batch_head([_systems()[0]])
    assert head.name == "molecules" and pot.predict_tensors(g, {"energy"}, head=head)["energy"].shape == (1,)


def test_the_given_model_is_not_changed(model):
    """Potential never moves, casts or freezes the caller's model: it works on a copy when it must."""
    m = JMPModel(model.config, model.heads, card=model.card)
    m.load_state_dict(model.state_dict())
    m.double().train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    pot = Potential(m, dtype="float32")
    assert pot.model is not m and m.training and all(p.requires_grad for p in m.parameters())
    assert all(v.dtype == torch.float64 for v in m.state_dict().values() if v.is_floating_point())
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert not pot.model.training and not any(p.requires_grad for p in pot.model.parameters())
    ready = Potential(pot.model, dtype="float32")  # already prepared: used as is, no copy
    assert ready.model is pot.model


def test_bad_rules_are_reported(model):
    with pytest.raises(ModelCardError, match="'head_rules' names head 'oc20'"):
        JMPModel(model.config, model.heads, card=ModelCard.from_dict({"head_rules": [{"head": "oc20"}]}))
    with pytest.raises(ModelCardError, match="unknown condition"):
        ModelCard.from_dict({"head_rules": [{"head": "surfaces", "elements": [29]}]})
    none_match = JMPModel(model.config, model.heads, card=ModelCard.from_dict(
        {"head_rules": [{"head": "molecules", "only_elements": [1, 6, 7, 8]}]}))
    with pytest.raises(InputError, match="no head rule matches"):
        Potential(none_match).predict([bulk("Cu")])


def test_relax_many_and_md_route_each_structure(model):
    """Batched simulations with a routed calculator give what each structure's own head gives alone."""
    from jmp_calc.simulate import relax_many, run_md

    mol, slab = _systems()[:2]
    routed = JMPCalculator(model, dtype="float64")
    together = [a.copy() for a in (mol, slab)]
    relax_many(together, routed, fmax=0.2, steps=5)
    for a, relaxed, head in zip((mol, slab), together, ("molecules", "surfaces")):
        alone = [a.copy()]
        relax_many(alone, JMPCalculator(model, head=head, dtype="float64"), fmax=0.2, steps=5)
        np.testing.assert_allclose(relaxed.positions, alone[0].positions, atol=1e-8)
    md = run_md([mol.copy(), slab.copy()], routed, steps=3, timestep_fs=0.5)
    assert len(md) == 2
