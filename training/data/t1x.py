"""Transition-1x (Schreiner et al. 2022) HDF5 reader.

Layout: ``data/<formula>/<reaction>/`` holds ``atomic_numbers`` (n,), ``positions`` (M, n, 3) in A and
``wB97x_6-31G(d).energy`` (M,), ``wB97x_6-31G(d).forces`` (M, n, 3) along the reaction path, plus subgroups
``reactant``/``product``/``transition_state`` that repeat three of those frames (not read here). The split groups
``train/``, ``val/``, ``test/`` link (hard or soft HDF5 links) to the reaction groups under ``data/``.

Units: the published file stores eV and eV/A (JMP subtracts eV atom references straight from it: H -13.62,
C -1029.41 ...). ``energy_unit="hartree"`` reads files written in Hartree and Hartree/A instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._hdf5 import ConformerIndex, dataset, open_h5, source
from ._lazy import PerProcess
from .base import HARTREE, DataError, Sample, Samples

__all__ = ["T1X_SPLITS", "read_t1x"]

T1X_SPLITS = ("data", "train", "val", "test")
_UNITS = {"ev": 1.0, "hartree": HARTREE}


def read_t1x(path: str | Path, *, split: str = "data", energy_key: str = "wB97x_6-31G(d).energy",
             forces_key: str | None = "wB97x_6-31G(d).forces", energy_unit: str = "eV") -> Samples:
    """Lazy samples of a Transition-1x file, one per frame of every reaction path in ``split``
    (``"data"`` = everything, or ``"train"``/``"val"``/``"test"``). Energy eV, forces eV/A, no PBC."""
    path = str(path)
    if energy_unit.lower() not in _UNITS:
        raise ValueError(f"energy_unit must be one of {list(_UNITS)}, got {energy_unit!r}")
    with open_h5(path) as f:
        if split not in f:
            raise DataError(f"{path}: no split group '{split}' (has: {', '.join(f.keys())})")
        groups, keep = [], []
        for formula in sorted(f[split].keys()):
            for rxn in sorted(f[split][formula].keys()):
                name = f"{split}/{formula}/{rxn}"  # resolved through the split's links on every access
                n = dataset(f[name], "positions", path).shape[0]
                groups.append(name)
                keep.append(np.arange(n))
    index = ConformerIndex.build(groups, keep)
    getter = _T1xGetter(path, index, energy_key, forces_key, _UNITS[energy_unit.lower()])
    return Samples(length=len(index), getter=getter, name=f"t1x:{path}:{split}")


class _T1xGetter:
    def __init__(self, path: str, index: ConformerIndex, energy_key: str, forces_key: str | None, unit: float):
        self.file, self.index, self.unit = PerProcess(open_h5, path), index, unit
        self.energy_key, self.forces_key = energy_key, forces_key

    def __call__(self, i: int) -> Sample:
        name, j = self.index[i]
        path = self.file.path
        grp = self.file.handle()[name]
        forces = None
        if self.forces_key is not None:
            forces = np.asarray(dataset(grp, self.forces_key, path)[j], np.float64) * self.unit
        return Sample(
            numbers=dataset(grp, "atomic_numbers", path)[()],
            positions=dataset(grp, "positions", path)[j],
            energy=float(dataset(grp, self.energy_key, path)[j]) * self.unit,
            forces=forces,
            source=source(path, name, j),
        )
