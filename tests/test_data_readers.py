"""Dataset readers: each test writes a tiny file in the dataset's real format, reads it back, and checks values,
units, tags/fixed atoms, laziness (a picklable ``Samples``), and one corrupt-file case per format family."""

from __future__ import annotations

import gzip
import json
import pickle

import numpy as np
import pytest

from training.data import (
    BOHR,
    FORMATS,
    HARTREE,
    KCAL_MOL,
    DataError,
    Samples,
    fit_atom_refs,
    jmp_qm9_split,
    normalization,
    qm9_split,
    read_ani1x,
    read_ase,
    read_dataset,
    read_matbench,
    read_md17,
    read_oc20,
    read_qm9,
    read_qmof,
    read_spice,
    read_t1x,
    split_indices,
)

h5py = pytest.importorskip("h5py")
RNG = np.random.default_rng(0)


def roundtrip(samples: Samples) -> Samples:
    """Pickle a Samples after touching it (a handle is open then), as DataLoader workers with spawn do."""
    assert isinstance(samples, Samples)
    samples[0]
    again = pickle.loads(pickle.dumps(samples))
    assert len(again) == len(samples)
    return again


def test_units():
    assert HARTREE == pytest.approx(27.2114, abs=1e-4)
    assert KCAL_MOL == pytest.approx(0.0433641, abs=1e-7)
    assert BOHR == pytest.approx(0.529177, abs=1e-6)


# ---- HDF5: ANI-1x, Transition-1x, SPICE ----

def test_ani1x(tmp_path):
    path = tmp_path / "ani1x.h5"
    pos = RNG.normal(size=(3, 2, 3))
    forces = RNG.normal(size=(3, 2, 3))
    with h5py.File(path, "w") as f:
        g = f.create_group("H2O1")  # ANI-1x names groups by formula
        g["atomic_numbers"] = np.array([1, 8])
        g["coordinates"] = pos
        g["wb97x_dz.energy"] = np.array([-1.0, np.nan, 2.0])
        g["wb97x_dz.forces"] = forces
        g["ccsd(t)_cbs.energy"] = np.array([np.nan, -3.0, np.nan])
    s = read_ani1x(path)
    assert len(s) == 2  # NaN conformer skipped
    assert s[0].energy == pytest.approx(-HARTREE)
    assert s[1].energy == pytest.approx(2 * HARTREE)
    np.testing.assert_allclose(s[1].positions, pos[2])
    np.testing.assert_allclose(s[1].forces, forces[2] * HARTREE)
    assert not s[0].pbc.any() and "H2O1[2]" in s[1].source
    assert roundtrip(s)[1].energy == pytest.approx(2 * HARTREE)
    cc = read_ani1x(path, energy_key="ccsd(t)_cbs.energy", forces_key=None)
    assert len(cc) == 1 and cc[0].energy == pytest.approx(-3 * HARTREE) and cc[0].forces is None
    assert read_dataset(path)[0].energy == pytest.approx(-HARTREE)  # sniffed layout


def test_hdf5_corrupt(tmp_path):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("CH4")
        g["atomic_numbers"] = np.array([6, 1, 1, 1, 1])
        g["wb97x_dz.energy"] = np.zeros(1)
    with pytest.raises(DataError, match=r"bad\.h5.*CH4.*coordinates"):
        read_ani1x(path)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(DataError, match="junk.h5"):
        read_spice(junk)


def _t1x_file(path, soft: bool):
    pos = RNG.normal(size=(4, 3, 3))
    with h5py.File(path, "w") as f:
        for k, rxn in enumerate(["rxn0001", "rxn0002"]):
            g = f.create_group(f"data/C1H2O1/{rxn}")
            g["atomic_numbers"] = np.array([6, 1, 8])
            g["positions"] = pos + k
            g["wB97x_6-31G(d).energy"] = np.arange(4.0) + 10 * k
            g["wB97x_6-31G(d).forces"] = np.ones((4, 3, 3))
            ts = g.create_group("transition_state")  # repeated frames, not read
            ts["positions"] = pos[:1]
        f.create_group("train/C1H2O1")
        f.create_group("test/C1H2O1")
        if soft:
            f["train/C1H2O1/rxn0001"] = h5py.SoftLink("/data/C1H2O1/rxn0001")
            f["test/C1H2O1/rxn0002"] = h5py.SoftLink("/data/C1H2O1/rxn0002")
        else:
            f["train/C1H2O1/rxn0001"] = f["data/C1H2O1/rxn0001"]
            f["test/C1H2O1/rxn0002"] = f["data/C1H2O1/rxn0002"]
    return pos


@pytest.mark.parametrize("soft", [True, False])
def test_t1x_splits(tmp_path, soft):
    path = tmp_path / "t1x.h5"
    pos = _t1x_file(path, soft)
    assert len(read_t1x(path)) == 8
    train, test = read_t1x(path, split="train"), read_t1x(path, split="test")
    assert len(train) == len(test) == 4
    assert [s.energy for s in test] == [10.0, 11.0, 12.0, 13.0]  # eV as published
    np.testing.assert_allclose(test[0].positions, pos[0] + 1)
    np.testing.assert_allclose(roundtrip(train)[3].forces, 1.0)
    assert read_t1x(path, split="test", energy_unit="hartree")[1].energy == pytest.approx(11 * HARTREE)
    with pytest.raises(DataError, match="val"):
        read_t1x(path, split="val")
    assert len(read_dataset(path, split="train")) == 4  # sniffed as t1x


def test_spice(tmp_path):
    path = tmp_path / "spice.hdf5"
    conf = RNG.normal(size=(2, 2, 3))
    grad = RNG.normal(size=(2, 2, 3))
    with h5py.File(path, "w") as f:
        g = f.create_group("[H:1][H:2]")
        g["atomic_numbers"] = np.array([1, 1], dtype=np.int16)
        g["conformations"] = conf
        g["dft_total_energy"] = np.array([-1.0, -1.1])
        g["formation_energy"] = np.array([-0.1, -0.2])
        g["dft_total_gradient"] = grad
        g["smiles"] = ["[H:1][H:2]"]
    s = read_spice(path)
    np.testing.assert_allclose(s[1].positions, conf[1] * BOHR)
    np.testing.assert_allclose(s[1].forces, -grad[1] * HARTREE / BOHR)
    assert s[1].energy == pytest.approx(-1.1 * HARTREE)
    assert read_spice(path, energy_key="formation_energy")[0].energy == pytest.approx(-0.1 * HARTREE)
    assert roundtrip(s)[0].numbers.tolist() == [1, 1]
    assert read_dataset(path).name.startswith("spice")


# ---- LMDB: OC20 / OC22 ----

def _oc20_record(k: int, as_dict: bool = False):
    import torch

    n = 4
    fields = dict(
        pos=torch.tensor(RNG.normal(size=(n, 3)), dtype=torch.float32),
        atomic_numbers=torch.tensor([29.0, 29.0, 8.0, 1.0]),
        cell=torch.eye(3).reshape(1, 3, 3) * 10.0,
        natoms=n,
        tags=torch.tensor([0, 1, 2, 2]),
        fixed=torch.tensor([1.0, 0.0, 0.0, 0.0]),
        y=float(k) - 0.5,
        force=torch.full((n, 3), float(k)),
        sid=1000 + k,
        fid=k,
    )
    if as_dict:
        return fields
    from torch_geometric.data import Data

    return Data(**fields)


def _write_lmdb(path, values: dict):
    import lmdb

    env = lmdb.open(str(path), subdir=False, map_size=1 << 24)
    with env.begin(write=True) as txn:
        for k, v in values.items():
            txn.put(k.encode("ascii"), v)
    env.close()


def test_oc20_lmdb(tmp_path):
    pytest.importorskip("lmdb")
    pytest.importorskip("torch_geometric")
    records = [_oc20_record(k) for k in range(3)]
    _write_lmdb(tmp_path / "a.lmdb", {"0": pickle.dumps(records[0]), "1": pickle.dumps(records[1]),
                                      "length": pickle.dumps(2)})
    _write_lmdb(tmp_path / "b.lmdb", {"0": pickle.dumps(_oc20_record(2, as_dict=True))})
    s = read_oc20(tmp_path)
    assert len(s) == 3  # the 'length' metadata key is skipped
    x = s[1]
    np.testing.assert_allclose(x.positions, records[1].pos.numpy(), rtol=1e-6)
    assert x.numbers.tolist() == [29, 29, 8, 1] and x.numbers.dtype == np.int64
    assert x.tags.tolist() == [0, 1, 2, 2] and x.fixed.tolist() == [True, False, False, False]
    assert x.pbc.all() and np.allclose(x.cell, 10 * np.eye(3))
    assert x.energy == pytest.approx(0.5) and np.allclose(x.forces, 1.0)
    assert "a.lmdb:1" in x.source and "sid=1001" in x.source
    assert s[2].energy == pytest.approx(1.5)  # dict record in the second file
    assert roundtrip(s)[2].tags.tolist() == [0, 1, 2, 2]
    assert len(read_dataset(tmp_path / "a.lmdb")) == 2

    from torch_geometric.data import Data

    from training.data.oc20 import record_to_sample

    legacy = Data.__new__(Data)  # OC20's files were pickled by PyG 1.x: attributes live in __dict__, no _store
    legacy.__dict__.update(_oc20_record(0, as_dict=True), edge_index=None)
    assert record_to_sample(pickle.loads(pickle.dumps(legacy)), "legacy").energy == pytest.approx(-0.5)


def test_oc20_corrupt(tmp_path):
    pytest.importorskip("lmdb")
    _write_lmdb(tmp_path / "bad.lmdb", {"0": b"\x80\x04garbage", "1": pickle.dumps({"no": "positions"})})
    s = read_oc20(tmp_path / "bad.lmdb")
    with pytest.raises(DataError, match=r"bad\.lmdb:0.*unpickle"):
        s[0]
    with pytest.raises(DataError, match=r"bad\.lmdb:1"):
        s[1]
    with pytest.raises(DataError, match="no such file"):
        read_oc20(tmp_path / "missing.lmdb")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no \*\.lmdb"):
        read_oc20(tmp_path / "empty")


# ---- npz: rMD17, MD17, MD22 ----

def test_rmd17(tmp_path):
    path = tmp_path / "rmd17_ethanol.npz"
    coords, forces = RNG.normal(size=(5, 3, 3)), RNG.normal(size=(5, 3, 3))
    np.savez(path, nuclear_charges=np.array([6, 8, 1]), coords=coords, energies=np.arange(5.0) - 97000.0,
             forces=forces, old_indices=np.arange(5))
    s = read_dataset(path)
    assert len(s) == 5 and s[2].energy == pytest.approx(-96998.0 * KCAL_MOL)
    np.testing.assert_allclose(s[4].forces, forces[4] * KCAL_MOL)
    np.testing.assert_allclose(roundtrip(s)[4].positions, coords[4])


def test_md22_shapes(tmp_path):
    path = tmp_path / "md22_Ac-Ala3-NHMe.npz"
    np.savez(path, z=np.array([1, 1]), R=np.zeros((3, 2, 3)), E=np.array([[1.0], [2.0], [3.0]]),
             F=np.ones((3, 2, 3)), name="x", theory="PBE0+MBD")
    s = read_md17(path)
    assert s[2].energy == pytest.approx(3 * KCAL_MOL) and np.allclose(s[0].forces, KCAL_MOL)


def test_npz_corrupt(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, z=np.array([1]), R=np.zeros((100, 1, 3)))
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(DataError, match="truncated.npz"):
        read_md17(bad)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(DataError, match="other.npz.*nuclear_charges"):
        read_md17(other)


# ---- pymatgen json / CIF: MatBench, QMOF ----

def _structure(a=3.6):
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(a), ["Cu", "Au"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_matbench(tmp_path):
    path = tmp_path / "matbench_mp_e_form.json.gz"
    table = {"index": ["mb-e-form-0", "mb-e-form-1"], "columns": ["structure", "e_form"],
             "data": [[_structure().as_dict(), -0.25], [_structure(4.0).as_dict(), 0.5]]}
    with gzip.open(path, "wt") as fh:
        json.dump(table, fh)
    s = read_dataset(path)
    assert s[0].properties == {"e_form": -0.25} and s[0].energy is None
    assert s[1].pbc.all() and np.allclose(s[1].cell, 4.0 * np.eye(3))
    np.testing.assert_allclose(s[1].positions[1], [2.0, 2.0, 2.0])
    assert s[1].numbers.tolist() == [29, 79] and "mb-e-form-1" in s[1].source
    assert roundtrip(read_matbench(path, as_energy=True))[0].energy == pytest.approx(-0.25)
    bad = tmp_path / "matbench_bad.json.gz"
    bad.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match="matbench_bad"):
        read_matbench(bad)


def test_qmof_cif_and_json(tmp_path):
    from pymatgen.io.cif import CifWriter

    records = [{"qmof_id": "qmof-a", "outputs": {"pbe": {"bandgap": 1.5}}},
               {"qmof_id": "qmof-b", "outputs": {"pbe": {"bandgap": None}}},  # no target: skipped
               {"qmof_id": "qmof-c", "outputs": {"pbe": {"bandgap": 3.0}}}]
    cif_dir = tmp_path / "cif"
    (cif_dir / "relaxed_structures").mkdir(parents=True)
    (cif_dir / "qmof.json").write_text(json.dumps(records))
    for qid, a in (("qmof-a", 3.6), ("qmof-b", 3.7), ("qmof-c", 3.8)):
        CifWriter(_structure(a)).write_file(cif_dir / "relaxed_structures" / f"{qid}.cif")
    s = read_dataset(cif_dir)
    assert len(s) == 2 and s[1].properties == {"bandgap": 3.0}
    assert np.allclose(s[1].cell, 3.8 * np.eye(3), atol=1e-6) and sorted(s[1].numbers) == [29, 79]
    assert roundtrip(s)[0].properties["bandgap"] == 1.5

    js = tmp_path / "js"
    js.mkdir()
    (js / "qmof.json").write_text(json.dumps(records))
    (js / "qmof_structure_data.json").write_text(json.dumps(
        [{"qmof_id": q, "structure": _structure(3.6).as_dict()} for q in ("qmof-a", "qmof-b", "qmof-c")]))
    s2 = read_qmof(js / "qmof.json", as_energy=True)
    assert s2[0].energy == 1.5 and s2[0].pbc.all()

    (cif_dir / "relaxed_structures" / "qmof-c.cif").write_text("data_broken\n_cell_length_a 3\n")
    with pytest.raises(DataError, match="qmof-c"):
        s[1]


# ---- ASE: extxyz (plain and gzipped), ASE db ----

def _ase_frames():
    from ase.build import fcc111
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.constraints import FixAtoms

    frames = []
    for k in range(2):
        at = fcc111("Cu", (1, 1, 3), vacuum=5.0)
        at.set_tags([3, 2, 1])  # fcc111 tags layers; keep ours distinct
        at.set_constraint(FixAtoms(indices=[0]))
        at.rattle(0.05, seed=k)
        at.calc = SinglePointCalculator(at, energy=-1.0 - k, forces=np.full((3, 3), 0.1 * k),
                                        stress=np.arange(6.0) * 0.01)
        at.info["band_gap"] = 0.5 + k
        frames.append(at)
    return frames


@pytest.mark.parametrize("name", ["frames.extxyz", "frames.extxyz.gz", "frames.db", "frames.traj"])
def test_ase_roundtrip(tmp_path, name):
    import ase.io

    frames = _ase_frames()
    path = tmp_path / name
    if name.endswith(".db"):  # ase.io.write drops info; a db stores it as key-value pairs
        import ase.db

        with ase.db.connect(path) as con:
            for at in frames:
                con.write(at, band_gap=at.info["band_gap"])
    else:
        ase.io.write(path, frames, format="extxyz" if ".extxyz" in name else None)
    s = read_dataset(path, require=("energy", "forces"))
    assert len(s) == 2
    x = s[1]
    assert x.energy == pytest.approx(-2.0) and np.allclose(x.forces, 0.1)
    np.testing.assert_allclose(x.positions, frames[1].positions, atol=1e-6)
    np.testing.assert_allclose(x.cell, frames[1].cell.array, atol=1e-6)
    assert x.stress[0, 1] == pytest.approx(0.05) and x.stress[1, 1] == pytest.approx(0.01)  # Voigt xy, yy
    assert x.tags.tolist() == [3, 2, 1] and x.fixed.tolist() == [True, False, False]
    assert x.properties["band_gap"] == pytest.approx(1.5)
    assert roundtrip(s)[0].energy == pytest.approx(-1.0)


def test_ase_keys_and_errors(tmp_path):
    path = tmp_path / "mace.xyz"
    path.write_text(
        "2\nLattice=\"5 0 0 0 5 0 0 0 5\" Properties=species:S:1:pos:R:3:REF_forces:R:3 REF_energy=-3.5 "
        "REF_stress=\"1 0 0 0 2 0 0 0 3\" config_type=bulk pbc=\"T T T\"\n"
        "H 0 0 0 1 0 0\nH 0 0 0.74 -1 0 0\n"
        "2\nProperties=species:S:1:pos:R:3 REF_energy=-3.0\nH 0 0 0\nH 0 0 0.8\n")
    s = read_ase(path, energy_key="REF_energy", forces_key="REF_forces", stress_key="REF_stress")
    assert s[0].energy == -3.5 and s[0].forces[1, 0] == -1.0 and np.allclose(np.diag(s[0].stress), [1, 2, 3])
    assert "config_type" not in s[0].properties and "REF_energy" not in s[0].properties
    with pytest.raises(DataError, match=r"mace\.xyz:1: no forces"):
        read_ase(path, energy_key="REF_energy", forces_key="REF_forces", require=("energy", "forces"))
    bad = tmp_path / "truncated.extxyz"
    bad.write_text("3\nProperties=species:S:1:pos:R:3\nH 0 0 0\nH 0 0 1\n")
    with pytest.raises(DataError, match="truncated.extxyz"):
        read_ase(bad)
    odd = tmp_path / "odd.xyz"  # a 2-atom frame whose stress entry is not 3x3 / Voigt
    odd.write_text("1\nProperties=species:S:1:pos:R:3 REF_stress=\"1 2 3 4\"\nH 0 0 0\n")
    with pytest.raises(DataError, match=r"odd\.xyz:0.*stress"):
        read_ase(odd, stress_key="REF_stress")


@pytest.mark.parametrize("name, frame1, message", [
    ("short_line", "H 0 0 0 1 0\nH 0 0 0.74 -1 0 0\n",
     r"short_line\.extxyz: frame 1, atom 0 \(line 7\): 6 columns, Properties=species:S:1:pos:R:3:forces:R:3 "
     r"declares 7"),
    ("extra_column", "H 0 0 0 1 0 0 9\nH 0 0 0.74 -1 0 0\n",  # ase would drop the 9 silently
     r"extra_column\.extxyz: frame 1, atom 0 \(line 7\): 8 columns"),
    ("count_too_big", "H 0 0 0 1 0 0\n", r"count_too_big\.extxyz: frame 1 \(line 5\): 2 atoms declared but the "
     r"file ends after 1 atom lines"),
    ("nan_energy", "H 0 0 0 1 0 0\nH 0 0 0.74 -1 0 0\n", r"nan_energy\.extxyz:1: non-finite energy \(nan\)"),
    ("inf_force", "H 0 0 0 1 0 0\nH 0 0 0.74 -1 inf 0\n",
     r"inf_force\.extxyz:1: non-finite forces \(inf at \[1, 1\]\)"),
])
def test_extxyz_inconsistent_frames_name_frame_and_line(tmp_path, name, frame1, message):
    head = '2\nLattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3:forces:R:3 energy={} pbc="T T T"\n'
    good = head.format(-1.0) + "H 0 0 0 1 0 0\nH 0 0 0.74 -1 0 0\n"
    path = tmp_path / f"{name}.extxyz"
    path.write_text(good + head.format("nan" if name == "nan_energy" else -1.0) + frame1)
    with pytest.raises(DataError, match=message):
        read_ase(path)
    gz = tmp_path / f"{name}.extxyz.gz"  # the compressed path is checked the same way
    gz.write_bytes(gzip.compress(path.read_bytes()))
    with pytest.raises(DataError, match=message.replace(r"\.extxyz", r"\.extxyz\.gz")):
        read_dataset(gz)
    short = tmp_path / "count_too_small.extxyz"  # a count one short: the next header lands on an atom line
    short.write_text(good + "1\ncomment\nH 0 0 0 1 0 0\nH 0 0 1 0 0 0\n" + good)
    with pytest.raises(DataError, match=r"frame 2 \(line 8\): expected the atom count, got 'H 0 0 1 0 0 0'; does "
                                        r"frame 1 have more atom lines than its count\?"):
        read_ase(short)


def test_dataloader_workers(tmp_path):
    """Lazy HDF5 and LMDB datasets opened in the parent still read correctly in forked DataLoader workers."""
    pytest.importorskip("lmdb")
    import torch

    h5 = tmp_path / "ani.h5"
    with h5py.File(h5, "w") as f:
        g = f.create_group("H2")
        g["atomic_numbers"] = np.array([1, 1])
        g["coordinates"] = np.zeros((6, 2, 3)) + np.arange(6)[:, None, None]
        g["wb97x_dz.energy"] = np.arange(6.0)
        g["wb97x_dz.forces"] = np.zeros((6, 2, 3))
    _write_lmdb(tmp_path / "x.lmdb", {str(k): pickle.dumps(_oc20_record(k, as_dict=True)) for k in range(6)})
    for samples in (read_ani1x(h5), read_oc20(tmp_path / "x.lmdb")):
        samples[0]  # parent opens its handle before forking
        loader = torch.utils.data.DataLoader(samples, batch_size=2, num_workers=2, collate_fn=list,
                                             multiprocessing_context="fork")
        energies = [x.energy for batch in loader for x in batch]
        assert energies == [samples[k].energy for k in range(6)]


def test_dispatch():
    with pytest.raises(DataError, match="known: .*ase.*oc20"):
        read_dataset("whatever.bin", format="nope")
    with pytest.raises(DataError, match="format="):
        read_dataset("whatever.unknownsuffix")
    assert {"ase", "oc20", "ani1x", "t1x", "spice", "md17", "qm9", "matbench", "qmof"} <= set(FORMATS)


# ---- QM9 from the qm9pack package (real data) ----

def test_qm9_real_molecules():
    pytest.importorskip("pandas")
    s = read_qm9(limit=3)  # first rows of the shipped CSV: CH4, NH3, H2O
    assert [x.numbers.tolist() for x in s] == [[6, 1, 1, 1, 1], [7, 1, 1, 1], [8, 1, 1]]
    methane = s[0]
    assert methane.energy == pytest.approx(-40.47893 * HARTREE)  # U0 of CH4 in the QM9 paper, Hartree
    assert methane.properties["alpha"] == pytest.approx(13.21)  # bohr^3
    assert methane.properties["Cv"] == pytest.approx(6.469)  # cal/(mol K)
    assert methane.properties["gap"] == pytest.approx(0.5048 * HARTREE)
    assert s[2].properties["mu"] == pytest.approx(1.8511)  # water, Debye
    d = np.linalg.norm(methane.positions[1:] - methane.positions[0], axis=1)
    np.testing.assert_allclose(d, 1.0919, atol=1e-3)  # C-H bond length, A
    assert pickle.loads(pickle.dumps(s))[1].properties["homo"] == pytest.approx(-0.257 * HARTREE)


@pytest.mark.parametrize("split, sizes", [(qm9_split, [104_664, 13_083, 13_084]),
                                           (jmp_qm9_split, [110_831, 10_000, 10_000])])
def test_qm9_splits(split, sizes):
    a, b = split(), split()
    assert [len(a[k]) for k in ("train", "val", "test")] == sizes
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert len(np.unique(np.concatenate(list(a.values())))) == 130_831
    assert not np.array_equal(split(seed=1)["test"], a["test"])


# ---- statistics ----

def _synthetic(refs: dict[int, float], n: int = 40, forces: bool = True):
    from training.data import Sample

    out = []
    for _ in range(n):
        z = RNG.choice(list(refs), size=RNG.integers(2, 9))
        e = sum(refs[int(k)] for k in z) + 0.01 * RNG.normal()
        out.append(Sample(numbers=z, positions=RNG.normal(size=(len(z), 3)), energy=e,
                          forces=np.full((len(z), 3), 2.0) if forces else None, properties={"gap": 2 * e}))
    return out


def test_fit_atom_refs():
    from training.data import Sample

    refs = {1: -13.6, 6: -1029.4, 8: -2041.8}
    samples = _synthetic(refs)
    for s in samples:  # exact totals, so the fit must recover the references to round-off
        s.energy = float(sum(refs[int(z)] for z in s.numbers))
        s.properties["gap"] = 2 * s.energy
    fit = fit_atom_refs(samples)
    assert fit.keys() == refs.keys()
    assert all(fit[z] == pytest.approx(refs[z], abs=1e-8) for z in refs)
    gap = fit_atom_refs(samples, key="gap")
    assert gap[6] == pytest.approx(2 * refs[6], abs=1e-8)
    stats = normalization(samples, fit)
    assert stats["energy_per_atom_mean"] == pytest.approx(0, abs=1e-8) and stats["forces_rms"] == pytest.approx(2.0)
    water = [Sample(numbers=[8, 1, 1], positions=np.eye(3) * k, energy=-2077.0 - k) for k in range(3)]
    with pytest.warns(RuntimeWarning, match="rank 1 < 2"):  # one composition: H and O not separable
        fit_atom_refs(water)


def test_normalization_values():
    samples = _synthetic({1: -1.0, 8: -5.0}, n=30)
    stats = normalization(samples, {1: -1.0, 8: -5.0})
    per_atom = [(s.energy - sum(-1.0 if z == 1 else -5.0 for z in s.numbers)) / len(s) for s in samples]
    assert stats["energy_per_atom_std"] == pytest.approx(np.std(per_atom))
    assert stats["n_samples"] == 30 == stats["n_force_samples"]


def test_split_indices():
    a = split_indices(1000, {"train": 950, "val": 50}, seed=3)
    assert a["val"].shape == (50,) and not set(a["train"]) & set(a["val"])
    assert np.array_equal(split_indices(1000, {"train": 950, "val": 50}, seed=3)["val"], a["val"])
    b = split_indices(100, {"train": 0.8, "val": 0.1, "test": None}, seed=0)
    assert [len(b[k]) for k in ("train", "val", "test")] == [80, 10, 10]
    assert sorted(np.concatenate(list(b.values()))) == list(range(100))
    with pytest.raises(ValueError):
        split_indices(10, {"train": 8, "val": 5})
