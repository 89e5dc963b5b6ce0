"""The torch-sim interface (optional extra ``[torchsim]``): torch-sim's own validator, agreement with the ASE
calculator on a triclinic cell and unordered systems, and short torch-sim MD and relaxation runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

ts = pytest.importorskip("torch_sim", reason="the torch-sim extra is not installed: pip install 'jmp-calc[torchsim]'")

from ase.build import bulk  # noqa: E402

from jmp_calc import JMPCalculator  # noqa: E402
from jmp_calc.torchsim import JMPTorchSimModel  # noqa: E402

CPU, F64 = torch.device("cpu"), torch.float64


@pytest.fixture(scope="module")
def model():
    return JMPTorchSimModel(dtype=F64, device="cpu")


def _cells():
    a = bulk("Cu", "fcc", a=3.62, cubic=True)
    a.set_cell(a.cell.array + np.array([[0, 0.2, 0], [0.1, 0, 0], [0, 0.3, 0.1]]), scale_atoms=True)
    a.rattle(0.05, seed=0)
    b = bulk("Pt", "fcc", a=3.95).repeat((2, 2, 2))
    b.rattle(0.05, seed=1)
    return [a, b]


@pytest.mark.filterwarnings("ignore:two neighbours tie", "ignore:elements")  # its Si and Fe cells: not EMT data
def test_torchsim_validator(model):
    from torch_sim.models.interface import validate_model_outputs

    validate_model_outputs(model, CPU, F64)


def test_matches_ase_calculator(model):
    structs = _cells()
    out = model(ts.io.atoms_to_state(structs, CPU, F64))
    calc = JMPCalculator(dtype="float64")
    n0 = len(structs[0])
    for i, (a, sl) in enumerate(zip(structs, (slice(0, n0), slice(n0, None)))):
        a.calc = calc
        assert float(out["energy"][i]) == pytest.approx(a.get_potential_energy(), rel=1e-10)
        np.testing.assert_allclose(out["forces"][sl].numpy(), a.get_forces(), atol=1e-9)
        np.testing.assert_allclose(out["stress"][i].numpy(), a.get_stress(voigt=False), atol=1e-10)
    # atoms of the two systems interleaved: results follow the atoms
    state = ts.io.atoms_to_state(structs, CPU, F64)
    perm = torch.randperm(state.n_atoms, generator=torch.Generator().manual_seed(0))
    shuffled = {"positions": state.positions[perm], "cell": state.cell, "atomic_numbers": state.atomic_numbers[perm],
                "system_idx": state.system_idx[perm], "pbc": True}
    out2 = model(shuffled)
    torch.testing.assert_close(out2["energy"], out["energy"])
    torch.testing.assert_close(out2["forces"], out["forces"][perm])


def test_torchsim_md_and_relaxation(model):
    structs = _cells()
    state = ts.integrate(structs, model, integrator=ts.nvt_langevin, n_steps=5, temperature=300, timestep=0.001)
    assert torch.isfinite(state.positions).all() and state.positions.shape == (sum(map(len, structs)), 3)
    relaxed = ts.optimize(structs, model, optimizer=ts.frechet_cell_fire, max_steps=300,
                          convergence_fn=ts.generate_force_convergence_fn(force_tol=0.05))
    out = model(relaxed)
    assert out["forces"].norm(dim=1).max() < 0.05
    assert out["energy"].sum() < model(ts.io.atoms_to_state(structs, CPU, F64))["energy"].sum()


def _many():
    """24 periodic metal cells of 1 to 8 atoms (rattled: no k-NN ties)."""
    out = []
    for i in range(24):
        sym, a0 = (("Cu", 3.62), ("Ag", 4.09), ("Pt", 3.95))[i % 3]
        cell = bulk(sym, "fcc", a=a0, cubic=bool(i % 2)).repeat((1, 1, 1 + i % 2))
        if len(cell) > 1:
            cell.rattle(0.04, seed=i)
        out.append(cell)
    return out


def test_autobatcher_runs_many_structures(model):
    """torch-sim's BinningAutoBatcher, told how the model's memory scales (memory_scales_with: k-NN graphs cap the
    neighbours per atom, so 'n_atoms'), splits 24 structures into several batches; every result is the ASE
    calculator's."""
    from torch_sim.autobatching import BinningAutoBatcher, calculate_memory_scaler

    assert model.memory_scales_with == "n_atoms"
    structs = _many()
    state = ts.io.atoms_to_state(structs, CPU, F64)
    assert calculate_memory_scaler(state, model.memory_scales_with) == state.n_atoms
    batcher = BinningAutoBatcher(model, memory_scales_with=model.memory_scales_with, max_memory_scaler=24)
    results = ts.static(structs, model, autobatcher=batcher)
    bins = batcher.index_bins  # {system index: memory scaler} per batch
    assert len(bins) >= 4 and all(sum(b.values()) <= 24 for b in bins)
    assert sorted(i for b in bins for i in b) == list(range(len(structs)))
    refs = JMPCalculator(dtype="float64").predict_many(structs)  # the ASE calculator's batched path
    assert len(results) == len(structs)
    for r, ref in zip(results, refs):
        assert float(r["potential_energy"]) == pytest.approx(ref["energy"], rel=1e-10)
        np.testing.assert_allclose(r["forces"].numpy(), ref["forces"], atol=1e-9)


def test_one_batch_of_systems_for_different_heads(model):
    """A molecule (boxed, periodic like the rest of the state) and a metal in one torch-sim batch: each system
    is evaluated by its own head (the card's head_rules), as the ASE calculator does."""
    from ase.build import molecule

    mol = molecule("CH3OH")
    mol.set_cell([14.0, 14.0, 14.0])
    mol.center()
    mol.pbc = True
    structs = [mol, _cells()[1]]
    assert [model.potential.route(a) for a in structs] == ["molecules", "surfaces"]
    out = model(ts.io.atoms_to_state(structs, CPU, F64))
    calc = JMPCalculator(dtype="float64")
    n0 = len(mol)
    for i, (a, sl) in enumerate(zip(structs, (slice(0, n0), slice(n0, None)))):
        a.calc = calc
        assert float(out["energy"][i]) == pytest.approx(a.get_potential_energy(), rel=1e-10)
        np.testing.assert_allclose(out["forces"][sl].numpy(), a.get_forces(), atol=1e-9)
        np.testing.assert_allclose(out["stress"][i].numpy(), a.get_stress(voigt=False), atol=1e-10)
