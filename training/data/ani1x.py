"""ANI-1x (Smith et al. 2020) HDF5 reader.

Layout: one group per formula holding ``atomic_numbers`` (n,), ``coordinates`` (M, n, 3) in A and, per level of
theory, ``<lot>.energy`` (M,) in Hartree and ``<lot>.forces`` (M, n, 3) in Hartree/A. Conformers whose energy is NaN
(not computed at that level of theory, common for the CCSD(T) keys) are skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._hdf5 import ConformerIndex, dataset, open_h5, source
from ._lazy import PerProcess
from .base import HARTREE, DataError, Sample, Samples

__all__ = ["read_ani1x"]


def read_ani1x(path: str | Path, *, energy_key: str = "wb97x_dz.energy",
               forces_key: str | None = "wb97x_dz.forces") -> Samples:
    """Lazy samples of an ANI-1x file: energy in eV, forces in eV/A (None when ``forces_key`` is None), no PBC.

    ``energy_key``/``forces_key`` pick the level of theory, e.g. ``"ccsd(t)_cbs.energy"`` with ``forces_key=None``.
    """
    path = str(path)
    with open_h5(path) as f:
        groups = sorted(f)
        keep = []
        for name in groups:
            e = np.asarray(dataset(f[name], energy_key, path), dtype=np.float64)
            n_conf = dataset(f[name], "coordinates", path).shape[0]
            if e.shape != (n_conf,):
                raise DataError(f"{path}:/{name}: {energy_key} has shape {e.shape}, expected ({n_conf},)")
            keep.append(np.flatnonzero(~np.isnan(e)))
    index = ConformerIndex.build(groups, keep)
    return Samples(length=len(index), getter=_Ani1xGetter(path, index, energy_key, forces_key), name=f"ani1x:{path}")


class _Ani1xGetter:
    def __init__(self, path: str, index: ConformerIndex, energy_key: str, forces_key: str | None):
        self.file, self.index = PerProcess(open_h5, path), index
        self.energy_key, self.forces_key = energy_key, forces_key

    def __call__(self, i: int) -> Sample:
        name, j = self.index[i]
        path = self.file.path
        grp = self.file.handle()[name]
        forces = None
        if self.forces_key is not None:
            forces = np.asarray(dataset(grp, self.forces_key, path)[j], np.float64) * HARTREE
        return Sample(
            numbers=dataset(grp, "atomic_numbers", path)[()],
            positions=dataset(grp, "coordinates", path)[j],
            energy=float(dataset(grp, self.energy_key, path)[j]) * HARTREE,
            forces=forces,
            source=source(path, name, j),
        )
