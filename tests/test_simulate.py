"""Batched predictions and lock-step relaxations equal one-by-one calls; phonons run on batched forces."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import add_adsorbate, bulk, fcc100, fcc111, molecule
from ase.optimize import FIRE

from jmp_calc import InputError, JMPCalculator
from jmp_calc.simulate import phonons, relax_many, set_maxwell_boltzmann_momenta


@pytest.fixture(scope="module")
def calc():
    return JMPCalculator(dtype="float64")  # the embedded model: conservative forces and stress


def _structures():
    out = []
    for i, (metal, builder, ads) in enumerate([("Cu", fcc111, "O"), ("Pt", fcc100, "H"), ("Ag", fcc111, "N")]):
        slab = builder(metal, size=(2, 2, 3), vacuum=6.0)
        add_adsorbate(slab, ads, 1.7, "ontop")
        slab.rattle(0.05, seed=i)
        out.append(slab)
    cu = bulk("Cu", "fcc", a=3.7, cubic=True)
    cu.rattle(0.05, seed=7)
    out.append(cu)
    return out


def test_predict_many_equals_single_calls(calc):
    structs = _structures() + [molecule("H2O")] * 0
    many = calc.predict_many(structs, batch_size=3)
    for atoms, res in zip(structs, many):
        atoms.calc = calc
        assert res["energy"] == pytest.approx(atoms.get_potential_energy(), rel=1e-10, abs=1e-10)
        np.testing.assert_allclose(res["forces"], atoms.get_forces(), atol=1e-9)
    # tiny atom budget forces one structure per batch: same numbers
    again = calc.potential.predict_many(structs, max_atoms=1)
    for a, b in zip(many, again):
        assert a["energy"] == pytest.approx(b["energy"], rel=1e-10)


@pytest.mark.slow
def test_relax_many_equals_one_by_one(calc):
    structs = _structures()[:3]
    batched = [s.copy() for s in structs]
    info = relax_many(batched, calc, fmax=0.05, optimizer="FIRE", steps=60)
    for s, b, inf in zip(structs, batched, info):
        ref = s.copy()
        ref.calc = calc
        opt = FIRE(ref, logfile=None)
        opt.run(fmax=0.05, steps=60)
        assert inf["steps"] == opt.nsteps
        np.testing.assert_allclose(b.positions, ref.positions, atol=1e-7)


def test_relax_many_cell(calc):
    cu = bulk("Cu", "fcc", a=3.8, cubic=True)
    (info,) = relax_many([cu], calc, fmax=0.02, cell=True, steps=200)
    assert info["converged"]
    assert np.abs(cu.get_stress()).max() < 0.02  # relaxed cell: small stress (eV/A^3)
    assert 3.4 < cu.cell.lengths()[0] < 3.8


def test_phonons_gamma_acoustic_modes_vanish(calc):
    cu = bulk("Cu", "fcc", a=3.61)
    ph = phonons(cu, calc, supercell=(3, 3, 3))
    ph.run_qpoints([[0, 0, 0]])
    freqs = ph.qpoints.frequencies[0]
    assert np.abs(freqs).max() < 0.05  # THz: translations cost no energy


@pytest.mark.slow
def test_md_replicas_equal_single_runs_and_conserve_energy(calc):
    from ase import units
    from ase.md.verlet import VelocityVerlet

    from jmp_calc.simulate import run_md

    reps = []
    for i in range(2):
        a = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 1))
        a.rattle(0.03, seed=i)
        set_maxwell_boltzmann_momenta(a, 300, np.random.default_rng(i))
        reps.append(a)
    singles = [a.copy() for a in reps]
    logs = run_md(reps, calc, steps=20, timestep_fs=1.0)
    for a, s, log in zip(reps, singles, logs):
        s.calc = calc
        VelocityVerlet(s, timestep=1.0 * units.fs).run(20)
        np.testing.assert_allclose(a.positions, s.positions, atol=1e-8)
        drift = abs(log["total"][-1] - log["total"][0]) / len(a)
        assert drift < 1e-3  # eV/atom over 20 fs


def test_embed_shapes_and_batch_independence():
    from jmp_calc import embed

    structs = _structures()
    x = embed(structs, batch_size=2)
    y = embed(structs, batch_size=4)
    assert x.shape == (len(structs), 32)
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_npt_volume_responds(calc):

    from jmp_calc.simulate import run_md

    squeezed = bulk("Cu", "fcc", a=3.45, cubic=True)  # compressed: positive pressure pushes the cell out
    set_maxwell_boltzmann_momenta(squeezed, 300, np.random.default_rng(0))
    v0 = squeezed.get_volume()
    (log,) = run_md([squeezed], calc, steps=30, timestep_fs=2.0, temperature_K=300, pressure_bar=0.0,
                    taup_fs=100.0)
    assert len(log["volume"]) == 31 and log["volume"][-1] > v0 * 1.02
    with pytest.raises(ValueError, match="temperature"):
        run_md([squeezed], calc, steps=1, pressure_bar=0.0)


def test_pymatgen_structure_and_molecule_accepted(calc):
    pytest.importorskip("pymatgen")
    from pymatgen.core import Molecule, Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    cu = bulk("Cu", "fcc", a=3.7, cubic=True)
    cu.rattle(0.03, seed=5)
    ref = calc.predict_many([cu])[0]
    struct = AseAtomsAdaptor.get_structure(cu)
    assert isinstance(struct, Structure)
    (res,) = calc.predict_many([struct])
    assert res["energy"] == pytest.approx(ref["energy"], rel=1e-12)
    np.testing.assert_allclose(res["stress"], ref["stress"], atol=1e-12)
    moved = cu.copy()
    relax_many([moved], calc, fmax=0.05, steps=20)
    (info,) = relax_many([struct], calc, fmax=0.05, steps=20)
    assert info["energy"] == pytest.approx(moved.get_potential_energy(), rel=1e-10)
    np.testing.assert_allclose(struct.cart_coords, moved.positions, atol=1e-8)
    mol = Molecule(["Cu", "Cu", "Cu"], [[0, 0, 0], [2.4, 0, 0], [1.2, 2.0, 0]])
    atoms = AseAtomsAdaptor.get_atoms(mol)
    atoms.calc = calc
    (res,) = calc.potential.predict([mol])
    assert res["energy"] == pytest.approx(atoms.get_potential_energy(), rel=1e-12)


def test_maxwell_boltzmann_momenta():
    """The helper of the examples and benchmarks: ASE's Maxwell-Boltzmann draw for the rng, without total momentum
    and, for an open structure, without angular momentum; the temperature follows; bad temperatures refused."""
    from ase import units

    crystal = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((10, 10, 10))  # 4,000 atoms
    set_maxwell_boltzmann_momenta(crystal, 300, np.random.default_rng(5))
    m = crystal.get_masses()[:, None]
    draw = np.random.default_rng(5).standard_normal((len(crystal), 3)) * np.sqrt(m * units.kB * 300)
    still = draw - m * draw.sum(0) / m.sum()  # Stationary, which keeps the kinetic energy of the draw
    still *= np.sqrt(((draw**2) / m).sum() / ((still**2) / m).sum())
    np.testing.assert_allclose(crystal.get_momenta(), still, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(crystal.get_momenta().sum(0), 0, atol=1e-10)
    assert crystal.get_temperature() == pytest.approx(300, rel=0.03)
    assert np.abs(crystal.get_angular_momentum()).max() > 1e-3  # periodic: rotation is no conserved quantity

    mol = molecule("C6H6")
    set_maxwell_boltzmann_momenta(mol, 500, np.random.default_rng(1))
    np.testing.assert_allclose(mol.get_momenta().sum(0), 0, atol=1e-12)
    np.testing.assert_allclose(mol.get_angular_momentum(), 0, atol=1e-10)
    assert mol.get_temperature() > 50
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(InputError, match="temperature_K"):
            set_maxwell_boltzmann_momenta(mol, bad, np.random.default_rng(0))
