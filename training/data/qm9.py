"""QM9 (Ramakrishnan et al. 2014) from the ``qm9pack`` package, which ships all 130,831 molecules as CSV.

``qm9pack``'s own ``import`` needs ``pkg_resources`` (gone from setuptools >= 81), so the CSV files are located with
``importlib.util.find_spec`` without importing the package, and read with pandas (a ``qm9pack`` dependency).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from ase.data import atomic_numbers as _Z

from .base import HARTREE, DataError, Sample, Samples

__all__ = ["QM9_PROPERTIES", "QM9_SIZE", "jmp_qm9_split", "qm9_data_dir", "qm9_split", "read_qm9"]

QM9_SIZE = 130_831

# property name -> (qm9pack column, factor to the unit, unit). Energies are converted from Hartree to eV.
QM9_PROPERTIES: dict[str, tuple[str, float, str]] = {
    "mu": ("Dipole_debye", 1.0, "Debye"),
    "alpha": ("Polarizability_bohr3", 1.0, "bohr^3"),
    "homo": ("HOMO_au", HARTREE, "eV"),
    "lumo": ("LUMO_au", HARTREE, "eV"),
    "gap": ("HOMO_LUMO_gap_au", HARTREE, "eV"),
    "r2": ("R2_bohr2", 1.0, "bohr^2"),
    "zpve": ("ZPVE_au", HARTREE, "eV"),
    "U0": ("InternalEnergy_0K_au", HARTREE, "eV"),
    "U": ("InternalEnergy_298K_au", HARTREE, "eV"),
    "H": ("Enthalphy_298K_au", HARTREE, "eV"),  # sic: the package's column name
    "G": ("GibbsFreeEnergy_298K_au", HARTREE, "eV"),
    "Cv": ("Heatcapacity_Cv_cal_mol_K", 1.0, "cal/(mol K)"),
    "A": ("RotA_GHz", 1.0, "GHz"),
    "B": ("RotB_GHz", 1.0, "GHz"),
    "C": ("RotC_GHz", 1.0, "GHz"),
}


def qm9_data_dir() -> Path:
    """The folder of ``qm9pack``'s CSV files."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("QM9 needs the qm9pack package: pip install qm9pack")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def read_qm9(data_dir: str | Path | None = None, *, limit: int | None = None) -> Samples:
    """All QM9 molecules in the order of their QM9 index (``limit``: only the first ones, read from the first CSV
    part, for quick looks). ``energy`` = U0 in eV; every entry of :data:`QM9_PROPERTIES` in ``properties`` in the
    units listed there. Positions A (B3LYP/6-31G(2df,p) geometries), no PBC. About 3 s for the whole set."""
    import pandas as pd

    data_dir = Path(data_dir) if data_dir is not None else qm9_data_dir()
    cols = ["Index", "N_atoms", "Elements", "XYZ_Ang"] + [c for c, _, _ in QM9_PROPERTIES.values()]
    parts, remaining = [], limit
    for k in (1, 2, 3):
        if remaining is not None and remaining <= 0:
            break
        file = data_dir / f"qm9_part{k}.csv"
        try:
            parts.append(pd.read_csv(file, usecols=cols, nrows=remaining))
        except (OSError, ValueError) as e:
            raise DataError(f"{file}: not a qm9pack CSV ({e})") from e
        if remaining is not None:
            remaining -= len(parts[-1])
    df = pd.concat(parts, ignore_index=True).sort_values("Index", kind="stable")
    n_atoms = df["N_atoms"].to_numpy(np.int64)
    # One vectorised parse of all "[[x,y,z],...]" and "['C','H',...]" strings instead of 130k literal_evals.
    xyz = np.array(",".join(df["XYZ_Ang"]).replace("[", "").replace("]", "").split(","), dtype=np.float64)
    symbols = ",".join(df["Elements"]).replace("[", "").replace("]", "").replace("'", "").split(",")
    if len(symbols) != n_atoms.sum() or len(xyz) != 3 * n_atoms.sum():
        raise DataError(f"{data_dir}: element/coordinate counts do not match N_atoms")
    numbers = np.array([_Z[s.strip()] for s in symbols], dtype=np.int64)
    props = {name: df[col].to_numpy(np.float64) * factor for name, (col, factor, _) in QM9_PROPERTIES.items()}
    getter = _Qm9Getter(df["Index"].to_numpy(np.int64), np.concatenate([[0], np.cumsum(n_atoms)]), numbers,
                        xyz.reshape(-1, 3), props)
    return Samples(length=len(df), getter=getter, name="qm9")


class _Qm9Getter:
    def __init__(self, index, offsets, numbers, positions, props):
        self.index, self.offsets, self.numbers, self.positions, self.props = index, offsets, numbers, positions, props

    def __call__(self, i: int) -> Sample:
        a, b = self.offsets[i], self.offsets[i + 1]
        props = {k: float(v[i]) for k, v in self.props.items()}
        return Sample(numbers=self.numbers[a:b], positions=self.positions[a:b], energy=props["U0"],
                      properties=props, source=f"qm9:{self.index[i]}")


def qm9_split(seed: int = 0, n: int = QM9_SIZE, fractions: tuple[float, float] = (0.8, 0.1)) -> dict[str, np.ndarray]:
    """This project's fixed random QM9 split, as positions in :func:`read_qm9`'s order (ascending QM9 index):
    ``perm = np.random.default_rng(seed).permutation(n)``; train = ``perm[:int(0.8 n)]``, val the next
    ``int(0.1 n)``, test the rest (104,664 / 13,083 / 13,084). It is the split of ``experiments.mini_jmp.datagen.qm9_split``
    (same recipe over the sorted ids), whose test molecules the mini pre-training sets exclude: fine-tune with the
    same seed. :func:`jmp_qm9_split` gives the paper's split instead."""
    perm = np.random.default_rng(seed).permutation(n)
    n_train, n_val = int(fractions[0] * n), int(fractions[1] * n)
    return {"train": perm[:n_train], "val": perm[n_train:n_train + n_val], "test": perm[n_train + n_val:]}


def jmp_qm9_split(seed: int = 42, n: int = QM9_SIZE, n_val: int = 10_000, n_test: int = 10_000
                  ) -> dict[str, np.ndarray]:
    """JMP's QM9 split (``jmp/datasets/finetune/qm9.py``): ``np.random.RandomState(seed).shuffle(arange(n))``,
    train = the first ``n - n_val - n_test`` (110,831), val the next 10,000, test the last 10,000. Positions in
    :func:`read_qm9`'s order (ascending QM9 index, as in PyG's ``qm9_v3`` that JMP shuffled, so seed 42 should
    reproduce JMP's split)."""
    if n_val + n_test >= n:
        raise ValueError(f"n_val + n_test = {n_val + n_test} leaves no training molecules out of {n}")
    idx = np.arange(n)
    np.random.RandomState(seed).shuffle(idx)
    n_train = n - n_val - n_test
    return {"train": idx[:n_train], "val": idx[n_train:n_train + n_val], "test": idx[n_train + n_val:]}
