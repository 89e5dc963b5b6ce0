"""MD17 / revised MD17 / MD22 ``.npz`` reader.

Key sets, detected from the file:

* rMD17 (Christensen & von Lilienfeld 2020): ``nuclear_charges`` (n,), ``coords`` (M, n, 3) A,
  ``energies`` (M,) kcal/mol, ``forces`` (M, n, 3) kcal/mol/A;
* MD17 (sGDML) and MD22: ``z`` (n,), ``R`` (M, n, 3) A, ``E`` (M,) or (M, 1) kcal/mol, ``F`` (M, n, 3) kcal/mol/A.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .base import HARTREE, KCAL_MOL, DataError, Sample, Samples

__all__ = ["MD17_KEYS", "read_md17"]

# (numbers, positions, energy, forces) per layout
MD17_KEYS = {
    "rmd17": ("nuclear_charges", "coords", "energies", "forces"),
    "md17": ("z", "R", "E", "F"),
}
_UNITS = {"kcal/mol": KCAL_MOL, "ev": 1.0, "hartree": HARTREE}


def read_md17(path: str | Path, *, energy_unit: str = "kcal/mol") -> Samples:
    """Samples of an MD17-family npz (arrays held in memory, a :class:`Sample` built per access). Energy eV,
    forces eV/A, no PBC. ``energy_unit`` (energies; forces are that unit per A): ``"kcal/mol"``, ``"eV"``,
    ``"hartree"``."""
    path = str(path)
    unit = _UNITS.get(energy_unit.lower())
    if unit is None:
        raise ValueError(f"energy_unit must be one of {list(_UNITS)}, got {energy_unit!r}")
    try:
        with np.load(path) as npz:
            layout = next((name for name, keys in MD17_KEYS.items() if keys[0] in npz.files and keys[1] in npz.files),
                          None)
            if layout is None:
                raise DataError(f"{path}: not an MD17/rMD17/MD22 file (keys: {', '.join(npz.files)}; expected one of "
                                + "; ".join(", ".join(k) for k in MD17_KEYS.values()) + ")")
            kz, kr, ke, kf = MD17_KEYS[layout]
            z, r = npz[kz], npz[kr]
            e = npz[ke] if ke in npz.files else None
            f = npz[kf] if kf in npz.files else None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: not a readable npz file ({type(e).__name__}: {e})") from e
    z = np.asarray(z, np.int64).reshape(-1)
    r = np.asarray(r, np.float64)
    m = len(r)
    if r.shape != (m, len(z), 3):
        raise DataError(f"{path}: {kr} has shape {r.shape}, expected (M, {len(z)}, 3)")
    if e is not None:
        e = np.asarray(e, np.float64).reshape(-1) * unit  # MD22/MD17 store E as (M, 1)
        if len(e) != m:
            raise DataError(f"{path}: {len(e)} energies for {m} frames")
    if f is not None:
        f = np.asarray(f, np.float64) * unit
        if f.shape != r.shape:
            raise DataError(f"{path}: {kf} has shape {f.shape}, expected {r.shape}")
    return Samples(length=m, getter=_FrameGetter(path, z, r, e, f), name=f"md17:{path}")


class _FrameGetter:
    def __init__(self, path: str, z: np.ndarray, r: np.ndarray, e: np.ndarray | None, f: np.ndarray | None):
        self.path, self.z, self.r, self.e, self.f = path, z, r, e, f

    def __call__(self, i: int) -> Sample:
        return Sample(numbers=self.z, positions=self.r[i], energy=None if self.e is None else self.e[i],
                      forces=None if self.f is None else self.f[i], source=f"{self.path}:{i}")
