"""Bad or unusual inputs to the ASE calculator: one clear error naming the problem, or a documented correct result.

docs/bad_inputs.md lists every case with its behaviour and test. Checkpoint files (truncated, pickled code) are
tested in tests/test_checkpoints.py, sha256 mismatches in tests/test_registry.py, training data files in
tests/test_data_readers.py. The embedded model (cutoff 5 A, closed-shell k-NN caps) in float64 throughout.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import add_adsorbate, bulk, fcc111, molecule
from ase.calculators.calculator import PropertyNotImplementedError

from jmp_calc import JMPCalculator
from jmp_calc.io import load_model
from jmp_calc.potential import InputError, Potential, resolve_device


@pytest.fixture(scope="module")
def calc():
    return JMPCalculator(dtype="float64")


def _results(atoms, calc, stress=False):
    atoms = atoms.copy()
    atoms.calc = calc
    out = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if stress:
        out["stress"] = atoms.get_stress()
    return out


def _assert_same(a, b, rel=1e-12, atol=1e-10):
    assert a["energy"] == pytest.approx(b["energy"], rel=rel, abs=atol)
    for k in ("forces", "stress"):
        if k in a and k in b:
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=atol)


def _rattled_cu(seed=1):
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    cu.rattle(0.05, seed=seed)
    return cu


# ---------------------------------------------------------------- structures that cannot be evaluated: one error
def test_empty_structure(calc):
    for atoms in (Atoms(), Atoms(cell=np.eye(3) * 5.0, pbc=True)):
        atoms.calc = calc
        with pytest.raises(InputError, match="the structure has no atoms"):
            atoms.get_potential_energy()
    assert calc.potential.predict([]) == [] and calc.predict_many([]) == []  # an empty list is no error


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nonfinite_positions(calc, value):
    atoms = molecule("H2O")
    atoms.positions[1, 2] = value
    atoms.calc = calc
    with pytest.raises(InputError, match="positions contain NaN or inf"):
        atoms.get_forces()


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nonfinite_cell_periodic(calc, value):
    atoms = _rattled_cu()
    cell = atoms.cell.array.copy()
    cell[2, 1] = value
    atoms.cell = cell
    atoms.calc = calc
    with pytest.raises(InputError, match="the cell contains NaN or inf"):
        atoms.get_potential_energy()


@pytest.mark.parametrize("z", [0, 119, 200])
def test_atomic_number_out_of_range(calc, z):
    atoms = Atoms(numbers=[z, 1], positions=[[0, 0, 0], [1.0, 0, 0]])
    atoms.calc = calc
    with pytest.raises(InputError, match=rf"atomic numbers must be in 1\.\.118; got \[{z}\]"):
        atoms.get_potential_energy()


def test_element_not_in_training_data_warns(calc):
    """The model card lists the elements seen in training; others give a RuntimeWarning and finite numbers."""
    assert calc.potential.elements == set(calc.model.card.elements) and 26 not in calc.potential.elements
    atoms = Atoms("FeH", positions=[[0, 0, 0], [1.6, 0, 0]])
    atoms.calc = calc
    with pytest.warns(RuntimeWarning, match=r"elements \['Fe'\] were not in this model's training data"):
        e = atoms.get_potential_energy()
    assert np.isfinite(e) and np.isfinite(atoms.get_forces()).all()


@pytest.mark.parametrize("d", [0.0, 0.05])
def test_coincident_atoms(calc, d):
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [d, 0, 0]])
    atoms.calc = calc
    with pytest.raises(InputError, match=r"1 pair\(s\) of atoms closer than 0\.1 A .* coincident atoms"):
        atoms.get_potential_energy()


def test_atom_coincident_with_a_periodic_image(calc):
    # atom 1 is 0.05 A from an image of atom 0
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [3.6, 0, 3.65]], cell=[3.6, 3.6, 3.6], pbc=True)
    atoms.calc = calc
    with pytest.raises(InputError, match=r"closer than 0\.1 A \(counting periodic images\), e\.g\. atoms 0 and 1"):
        atoms.get_potential_energy()


@pytest.mark.parametrize("c", [[3.6, 3.6, 1e-3], [3.6, 3.6, 0.0], [7.2, 0.0, 0.0]])
def test_nearly_singular_cell(calc, c):
    atoms = Atoms("Cu", positions=[[0, 0, 0]], cell=[[3.6, 0, 0], [0, 3.6, 0], c], pbc=True)
    atoms.calc = calc
    with pytest.raises(InputError, match=r"the cell is (nearly singular|singular \(zero volume\)) along a periodic"):
        atoms.get_potential_energy()
    chain = Atoms("Cu", positions=[[0, 0, 0]], cell=np.zeros((3, 3)), pbc=[True, False, False])  # periodic, a = 0
    chain.calc = calc
    with pytest.raises(InputError, match=r"singular \(zero volume\)"):
        chain.get_potential_energy()


# ---------------------------------------------------------------- options: one error naming the choices
def test_wrong_head_names_the_available_heads():
    heads = re.escape(str(load_model(None).head_names))  # the default model: ['surfaces', 'molecules']
    with pytest.raises(ValueError, match=rf"unknown head 'oc20'; this model has heads {heads}"):
        JMPCalculator(head="oc20")
    with pytest.raises(ValueError, match=rf"head index 3 out of range; this model has heads {heads}"):
        JMPCalculator(head=3)


def test_wrong_device(monkeypatch):
    with pytest.raises(InputError, match=r"invalid device 'tpu': .*use 'auto', 'cpu' or 'cuda\[:N\]'"):
        JMPCalculator(device="tpu")
    with pytest.raises(InputError, match="device 'meta' holds no data"):
        JMPCalculator(device="meta")
    if not torch.backends.mps.is_available():
        with pytest.raises(InputError, match="device 'mps' is not available in this PyTorch build or on this machine"):
            JMPCalculator(device="mps")
    if torch.cuda.device_count() < 8:
        with pytest.raises(InputError, match=r"device 'cuda:7' requested but (CUDA is not available|this machine has)"):
            JMPCalculator(device="cuda:7")
    # a machine with one GPU, faked: the index is checked before torch fails on it
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(InputError, match=r"this machine has 1 CUDA device\(s\) \(cuda:0\.\.cuda:0\)"):
        resolve_device("cuda:7")


def test_float32_model_returns_float64_close_to_float64_model(calc):
    atoms = _rattled_cu()
    c32 = JMPCalculator(dtype="float32")
    a32 = atoms.copy()
    a32.calc = c32
    e32, f32, s32, ea32 = a32.get_potential_energy(), a32.get_forces(), a32.get_stress(), a32.get_potential_energies()
    assert isinstance(e32, float) and f32.dtype == s32.dtype == ea32.dtype == np.float64
    assert next(c32.model.parameters()).dtype == torch.float32
    ref = _results(atoms, calc, stress=True)
    assert e32 == pytest.approx(ref["energy"], rel=1e-5)
    np.testing.assert_allclose(f32, ref["forces"], atol=1e-5)
    np.testing.assert_allclose(s32, ref["stress"], atol=1e-6)


# ---------------------------------------------------------------- unusual but valid structures: correct results
def test_isolated_atom(calc):
    """No neighbour within the cutoff: zero forces and stress, and the energy is the head's atom reference plus the
    network's learnt zero-neighbour term (not zero: the references are a linear fit, not isolated-atom energies),
    the limit of the energy as the last neighbour leaves the cutoff."""
    e_open = _results(Atoms("Cu"), calc)
    boxed = _results(Atoms("Cu", cell=np.eye(3) * 12.0, pbc=True), calc, stress=True)  # image at 12 A > 5 A cutoff
    assert boxed["energy"] == pytest.approx(e_open["energy"], rel=1e-14)
    assert np.all(e_open["forces"] == 0) and np.all(boxed["forces"] == 0) and np.all(boxed["stress"] == 0)
    pot = calc.potential.settings_for(Atoms("Cu"))  # the default model's head for metals
    cutoff = pot.graph.cutoff
    far = _results(Atoms("Cu2", positions=[[0, 0, 0], [cutoff + 0.01, 0, 0]]), calc)
    near = _results(Atoms("Cu2", positions=[[0, 0, 0], [cutoff - 0.01, 0, 0]]), calc)
    assert far["energy"] == pytest.approx(2 * e_open["energy"], rel=1e-14)
    assert near["energy"] == pytest.approx(2 * e_open["energy"], abs=1e-4)  # continuous at the cutoff

    # the atom reference enters additively: shifting it by delta shifts the isolated atom's energy by delta
    refs = pot.head.atom_refs
    assert refs is not None and 29 in refs
    model = load_model(None)
    k = model.head_index(pot.head.name)
    model.heads[k] = dataclasses.replace(model.heads[k], atom_refs={**refs, 29: refs[29] + 1.25})
    (shifted,) = Potential(model, head=k, dtype="float64").predict([Atoms("Cu")], properties=("energy",))
    assert shifted["energy"] - e_open["energy"] == pytest.approx(1.25, rel=1e-12)
    learnt = e_open["energy"] - refs[29]
    assert np.isfinite(learnt) and learnt != 0.0


def _chain():
    # a zig-zag Cu chain along x, 2 atoms per 5.1 A, rattled (no ties at the k-NN caps)
    atoms = Atoms("Cu2", positions=[[0.0, 0.0, 0.0], [2.55, 0.9, 0.1]], cell=[[5.1, 0, 0], [0, 0, 0], [0, 0, 0]],
                  pbc=[True, False, False])
    atoms.rattle(0.05, seed=4)
    return atoms


def test_1d_periodicity(calc):
    """pbc=[T, F, F] with zero cell vectors along the open directions equals a 3-D cell with vacuum > cutoff."""
    chain = _chain()
    ref = _results(chain, calc)
    assert np.isfinite(ref["energy"]) and np.abs(ref["forces"].sum(axis=0)).max() < 1e-10
    big = chain.copy()
    big.cell = [[5.1, 0, 0], [0, 30, 0], [0, 0, 30]]
    _assert_same(_results(big, calc), ref)
    big.pbc = True
    _assert_same(_results(big, calc), ref)
    moved = chain.copy()
    moved.positions += [1.3, -20.0, 7.0]  # along the periodic and the open directions
    _assert_same(_results(moved, calc), ref)
    chain.calc = calc
    with pytest.raises(PropertyNotImplementedError, match="periodic in 3 directions"):
        chain.get_stress()


def test_2d_periodicity(calc):
    slab = fcc111("Cu", size=(2, 2, 2), vacuum=0.0)
    add_adsorbate(slab, "O", 1.6, "fcc")
    slab.rattle(0.03, seed=5)
    slab.cell[2] = 0.0
    slab.pbc = [True, True, False]
    ref = _results(slab, calc)
    assert np.isfinite(ref["energy"])
    big = slab.copy()
    big.cell[2] = [0, 0, 30.0]
    big.pbc = True
    _assert_same(_results(big, calc), ref)
    moved = slab.copy()
    moved.positions += [0.0, 0.0, 40.0]  # along the open direction, outside any cell
    _assert_same(_results(moved, calc), ref)


def test_mixed_periodicity_with_tilted_cells_neighbours_equal_ase():
    """Open directions are searched as long periodic ones orthogonal to the periodic vectors (jmp_calc.graph.
    neighbors.vesin_pairs): same pairs, images and distances as ASE for cells not aligned with the axes."""
    from ase.neighborlist import neighbor_list as ase_neighbor_list

    from jmp_calc.graph import neighbor_list

    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    slab = fcc111("Pt", (2, 2, 3), vacuum=6.0)
    slab.rattle(0.05, seed=1)
    slab.positions, slab.cell = slab.positions @ q.T, slab.cell.array @ q.T  # pbc [T, T, F], rotated
    wire = Atoms("C3", positions=rng.normal(size=(3, 3)) * 2, cell=[[1.5, 1.5, 1.0], [0, 3, 0], [0, 0, 3]],
                 pbc=[True, False, False])
    for atoms in (slab, wire):
        for cutoff in (5.0, 12.0):
            i, j, shift, d = ase_neighbor_list("ijSd", atoms, cutoff)
            keep = d > 0.01
            src, dst, off, dist = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
            assert {(int(s), int(t), *o) for s, t, o in zip(src, dst, off.tolist())} == \
                {(int(s), int(t), *o) for s, t, o in zip(j[keep], i[keep], shift[keep].tolist())}
            np.testing.assert_allclose(np.sort(dist), np.sort(d[keep]), atol=1e-12)


def test_cell_much_smaller_than_cutoff(calc):
    """A 1-atom fcc primitive cell (face distances 2.1 A, cutoff 5 A: images up to 3 cells away) equals its
    supercells per atom."""
    prim = bulk("Cu", "fcc", a=3.6)
    cutoff = calc.potential.settings_for(prim).graph.cutoff
    assert min(cutoff / h for h in 1 / np.linalg.norm(prim.cell.reciprocal(), axis=1)) > 2
    ref = _results(prim, calc, stress=True)
    for sc in (bulk("Cu", "fcc", a=3.6, cubic=True), prim.repeat((3, 3, 3))):
        r = _results(sc, calc, stress=True)
        assert r["energy"] / len(sc) == pytest.approx(ref["energy"], rel=1e-11)
        np.testing.assert_allclose(r["stress"], ref["stress"], atol=1e-10)
        assert np.abs(r["forces"]).max() < 1e-10


def test_huge_vacuum_equals_open_boundaries(calc):
    co = molecule("CH3OH")
    co.rattle(0.02, seed=6)
    ref = _results(co, calc)
    boxed = co.copy()
    boxed.center(vacuum=500.0)  # a 1000 A cell
    boxed.pbc = True
    _assert_same(_results(boxed, calc), ref)


def test_left_handed_cell_equals_right_handed(calc):
    atoms = _rattled_cu()
    ref = _results(atoms, calc, stress=True)
    for cell in (atoms.cell.array[[1, 0, 2]], atoms.cell.array * [[1], [1], [-1]]):
        assert np.linalg.det(cell) < 0
        lh = atoms.copy()
        lh.cell = cell  # the same lattice, vectors in the other order or sign
        _assert_same(_results(lh, calc, stress=True), ref)


def test_far_apart_and_flat_structures_do_not_crash():
    """Geometries on which the neighbour library (vesin 0.6) divides by zero and kills the process (SIGFPE) or
    searches for minutes: very uneven cell grids and mixed periodicity with a large open extent. Run in a child
    process so that a regression fails this test instead of the test run."""
    code = r"""
import numpy as np, warnings
from ase import Atoms
from ase.build import fcc111
from jmp_calc import JMPCalculator
warnings.simplefilter("ignore")
calc = JMPCalculator(dtype="float64")
def e(a):
    a.calc = calc
    return a.get_potential_energy()
h = e(Atoms("H"))
h2 = e(Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]]))
out = {
    "line": e(Atoms("H3", positions=[[0, 0, 0], [0.74, 0, 0], [1e7, 0, 0]])) - h2 - h,
    "plane": e(Atoms("H2", positions=[[0, 0, 0], [400, 400, 0]])) - 2 * h,
    "wire": e(Atoms("H", cell=[[1e6, 0, 0], [0, 0, 0], [0, 0, 0]], pbc=[True, False, False])) - h,
    "sheet": e(Atoms("H2", positions=[[0, 0, 0], [200, 200, 0.3]], cell=[[400, 0, 0], [0, 400, 0], [0, 0, 0]],
                     pbc=[True, True, False])) - 2 * h,
    "thin": e(Atoms("H", cell=[[170, 0, 0], [0, 170, 0], [0, 0, 0.3]], pbc=True)),
}
slab = fcc111("Cu", (2, 2, 2), vacuum=0.0)
slab.rattle(0.02, seed=0)
slab.cell[2] = 0.0
slab.pbc = [True, True, False]
top = slab.positions[:, 2].max()
far, near = (slab + Atoms("H", positions=[[0, 0, top + dz]]) for dz in (1000.0, 10.0))
out["slab"] = e(far) - e(near)
print(repr(out))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"rc {r.returncode}: {r.stderr[-2000:]}"
    out = eval(r.stdout.strip().splitlines()[-1])
    for key in ("line", "plane", "wire", "sheet", "slab"):
        assert out[key] == pytest.approx(0.0, abs=1e-9), key
    assert np.isfinite(out["thin"])


def test_tie_at_a_knn_cap_warns():
    """A perfect crystal with a cap inside a neighbour shell (8 of the 12 nearest fcc neighbours): which ones are
    kept jumps under an infinitesimal displacement, and the calculator says so."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.calc = JMPCalculator(dtype="float64", max_neighbors=8)
    with pytest.warns(RuntimeWarning, match=r"structure 0 \(Cu4\): two neighbours tie at the max_neighbors cut "
                      r"\(8\) of head 'surfaces'") as record:
        assert np.isfinite(atoms.get_potential_energy())
    assert record[0].filename == __file__  # the user's line, not a file inside jmp_calc or ASE
    structs = [molecule("H2O"), atoms.copy(), atoms.copy()]
    with pytest.warns(RuntimeWarning, match=r"structures 1 \(Cu4\), 2 \(Cu4\): two neighbours tie") as record:
        atoms.calc.predict_many(structs)
    assert record[0].filename == __file__
    # a slab whose cap (18) cuts a neighbour shell warns when perfect, not when rattled as any real one is
    slab = fcc111("Cu", (3, 3, 4), vacuum=8.0)
    calc = JMPCalculator()
    with pytest.warns(RuntimeWarning, match="tie"):
        calc.predict_many([slab])
    slab.rattle(0.02, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        calc.predict_many([slab])


def test_no_warning_for_ordinary_inputs(calc):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _results(_rattled_cu(), calc, stress=True)
        _results(molecule("CH3OH"), calc)
