"""Physics of the calculator's outputs with the embedded model (float64, conservative, smooth dihedral basis, k-NN
caps at closed fcc shells): gradients by finite differences on open, slab and triclinic structures, invariances of
periodic structures (image choice, cell choice, supercells, rotations and reflections, atom order), and
bit-identical repeated calls.

Complements tests/test_calculator.py (finite differences on a random-weight checkpoint, molecule invariances).
Every structure is rattled: in a perfect crystal neighbours tie at the k-NN caps and the energy is not smooth.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from ase import Atoms
from ase.build import add_adsorbate, bulk, fcc111, molecule

from jmp_calc import JMPCalculator


@pytest.fixture(scope="module")
def calc():
    return JMPCalculator(dtype="float64")


def _eval(atoms, calc, stress=True):
    a = atoms.copy()
    a.calc = calc
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no tie at a k-NN cap, no unseen element
        out = {"energy": a.get_potential_energy(), "forces": a.get_forces(), "energies": a.get_potential_energies()}
        if stress:
            out["stress"] = a.get_stress(voigt=False)
    return out


def _triclinic():
    """4 atoms (Cu3Au), sheared fcc cell, rattled."""
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
    atoms.numbers[0] = 79
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + [[0.02, 0.08, -0.05], [0.0, -0.03, 0.06], [0.04, 0.0, 0.01]]),
                   scale_atoms=True)
    atoms.rattle(0.06, seed=11)
    return atoms


def _slab():
    slab = fcc111("Pt", size=(2, 2, 2), vacuum=6.0)  # pbc [T, T, F]
    add_adsorbate(slab, "O", 1.5, "fcc")
    add_adsorbate(slab, "H", 2.4, "ontop")
    slab.rattle(0.04, seed=13)  # its closest pair of neighbours at a k-NN cap differ by 0.01 A (>> the FD step)
    return slab


def _molecule():
    m = molecule("CH3CH2OH")
    m.rattle(0.03, seed=14)
    return m


STRUCTURES = {"molecule": _molecule, "slab": _slab, "triclinic": _triclinic}


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_forces_are_minus_energy_gradient(calc, name):
    """Every coordinate, central differences (error ~h^2)."""
    atoms = STRUCTURES[name]()
    forces = _eval(atoms, calc, stress=False)["forces"]
    h = 1e-4
    fd = np.zeros_like(forces)
    for i in range(len(atoms)):
        for k in range(3):
            e = []
            for sign in (1, -1):
                p = atoms.copy()
                p.positions[i, k] += sign * h
                e.append(_eval(p, calc, stress=False)["energy"])
            fd[i, k] = -(e[0] - e[1]) / (2 * h)
    np.testing.assert_allclose(fd, forces, rtol=0, atol=2e-6 * max(1.0, np.abs(forces).max()))
    assert np.abs(forces.sum(axis=0)).max() < 1e-10  # no net force (translation invariance)


def test_stress_is_strain_derivative_triclinic(calc):
    """All nine components of dE/d(strain) / volume on a triclinic cell (test_calculator.py checks five on a cubic
    one): symmetric strain, atoms moving with the cell."""
    atoms = _triclinic()
    stress = _eval(atoms, calc)["stress"]
    np.testing.assert_allclose(stress, stress.T, atol=1e-12)
    h, vol = 1e-5, atoms.get_volume()
    fd = np.zeros((3, 3))
    for a in range(3):
        for b in range(a, 3):
            eps = np.zeros((3, 3))
            eps[a, b] = eps[b, a] = h / (1 if a == b else 2)  # symmetric strain with d(eps_ab + eps_ba) = h
            e = []
            for sign in (1, -1):
                p = atoms.copy()
                p.set_cell(atoms.cell.array @ (np.eye(3) + sign * eps), scale_atoms=True)
                e.append(_eval(p, calc, stress=False)["energy"])
            fd[a, b] = fd[b, a] = (e[0] - e[1]) / (2 * h) / vol
    np.testing.assert_allclose(fd, stress, rtol=0, atol=1e-7)


def _assert_same(a, b, atol=1e-10):
    assert a["energy"] == pytest.approx(b["energy"], rel=1e-12, abs=1e-12)
    for k in ("forces", "energies", "stress"):
        if k in a and k in b:
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=atol, err_msg=k)


def test_wrapping_atoms_by_lattice_vectors(calc):
    atoms = _triclinic()
    ref = _eval(atoms, calc)
    rng = np.random.default_rng(0)
    moved = atoms.copy()
    moved.positions += rng.integers(-3, 4, size=(len(atoms), 3)) @ atoms.cell.array  # each atom its own image
    _assert_same(_eval(moved, calc), ref)
    wrapped = moved.copy()
    wrapped.wrap()
    _assert_same(_eval(wrapped, calc), ref)


def test_equivalent_cells(calc):
    """The same crystal described by other lattice vectors (unimodular integer transforms, handedness either way)
    has the same energy, forces, per-atom energies and stress."""
    atoms = _triclinic()
    ref = _eval(atoms, calc)
    a, b, c = atoms.cell.array
    for cell in ([a, b, a + c], [a + b, b, c - 2 * a], [b, a, c], [a, b + c, -c]):
        assert abs(abs(np.linalg.det(cell)) - abs(np.linalg.det(atoms.cell.array))) < 1e-9
        other = atoms.copy()
        other.set_cell(cell, scale_atoms=False)
        _assert_same(_eval(other, calc), ref)


def test_supercell_is_extensive(calc):
    """A 2x2x2 supercell: 8 times the energy, the same forces and per-atom energies on every copy of an atom, the
    same stress."""
    atoms = _triclinic()
    ref = _eval(atoms, calc)
    sc = atoms.repeat((2, 2, 2))  # ASE order: copy k of atom i is atom k * n + i
    out = _eval(sc, calc)
    assert out["energy"] == pytest.approx(8 * ref["energy"], rel=1e-12)
    n = len(atoms)
    for k in range(8):
        np.testing.assert_allclose(out["forces"][k * n:(k + 1) * n], ref["forces"], rtol=0, atol=1e-10)
        np.testing.assert_allclose(out["energies"][k * n:(k + 1) * n], ref["energies"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(out["stress"], ref["stress"], rtol=0, atol=1e-11)


@pytest.mark.parametrize("proper", [True, False])
def test_rotation_reflection_and_permutation_of_a_periodic_structure(calc, proper):
    """Rotating (or reflecting) cell and atoms rotates forces and stress; reordering atoms reorders forces.
    tests/test_calculator.py checks this for a molecule; here with a cell and stress."""
    atoms = _triclinic()
    ref = _eval(atoms, calc)
    rng = np.random.default_rng(1 if proper else 2)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    if (np.linalg.det(q) > 0) != proper:
        q[:, 0] *= -1
    perm = rng.permutation(len(atoms))
    moved = Atoms(numbers=atoms.numbers[perm], positions=atoms.positions[perm] @ q.T + [0.3, -1.2, 2.0],
                  cell=atoms.cell.array @ q.T, pbc=True)
    out = _eval(moved, calc)
    assert out["energy"] == pytest.approx(ref["energy"], rel=1e-12)
    np.testing.assert_allclose(out["forces"], ref["forces"][perm] @ q.T, rtol=0, atol=1e-10)
    np.testing.assert_allclose(out["energies"], ref["energies"][perm], rtol=0, atol=1e-10)
    np.testing.assert_allclose(out["stress"], q @ ref["stress"] @ q.T, rtol=0, atol=1e-11)


def test_repeated_calls_are_bit_identical(calc):
    """Default settings on CPU (on GPU deterministic=True, as CUDA scatter-adds are order-dependent): the same
    state evaluated again, after its graphs were rebuilt (another structure in between) or by a second
    calculator, gives the same bits."""
    on_gpu = calc.potential.device.type == "cuda"
    if on_gpu:
        calc = JMPCalculator(dtype="float64", deterministic=True)
    atoms, other = _triclinic(), _slab()
    first = _eval(atoms, calc)
    _eval(other, calc, stress=False)  # replaces the cached graphs
    again = _eval(atoms, calc)
    fresh = _eval(atoms, JMPCalculator(dtype="float64", deterministic=on_gpu))
    for r in (again, fresh):
        assert r["energy"] == first["energy"]
        for k in ("forces", "energies", "stress"):
            assert np.array_equal(r[k], first[k]), k
