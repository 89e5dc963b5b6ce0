"""SPICE (Eastman et al. 2023) HDF5 reader.

Layout: one group per molecule holding ``atomic_numbers`` (n,), ``conformations`` (M, n, 3) in Bohr,
``dft_total_energy`` and ``formation_energy`` (M,) in Hartree, ``dft_total_gradient`` (M, n, 3) in Hartree/Bohr
(forces = -gradient), plus ``smiles``/``subset`` strings. Conformers with a NaN energy are skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._hdf5 import ConformerIndex, dataset, open_h5, source
from ._lazy import PerProcess
from .base import BOHR, HARTREE, DataError, Sample, Samples

__all__ = ["read_spice"]


def read_spice(path: str | Path, *, energy_key: str = "dft_total_energy",
               gradient_key: str | None = "dft_total_gradient") -> Samples:
    """Lazy samples of a SPICE file: positions A, energy eV (``energy_key``: ``"dft_total_energy"`` or
    ``"formation_energy"``), forces eV/A from ``gradient_key`` (None: no forces), no PBC."""
    path = str(path)
    with open_h5(path) as f:
        groups = sorted(f.keys())
        keep = []
        for name in groups:
            e = np.asarray(dataset(f[name], energy_key, path), dtype=np.float64).reshape(-1)
            n_conf = dataset(f[name], "conformations", path).shape[0]
            if len(e) != n_conf:
                raise DataError(f"{path}:/{name}: {len(e)} energies for {n_conf} conformations")
            keep.append(np.flatnonzero(~np.isnan(e)))
    index = ConformerIndex.build(groups, keep)
    return Samples(length=len(index), getter=_SpiceGetter(path, index, energy_key, gradient_key),
                   name=f"spice:{path}")


class _SpiceGetter:
    def __init__(self, path: str, index: ConformerIndex, energy_key: str, gradient_key: str | None):
        self.file, self.index = PerProcess(open_h5, path), index
        self.energy_key, self.gradient_key = energy_key, gradient_key

    def __call__(self, i: int) -> Sample:
        name, j = self.index[i]
        path = self.file.path
        grp = self.file.handle()[name]
        forces = None
        if self.gradient_key is not None:
            forces = -np.asarray(dataset(grp, self.gradient_key, path)[j], np.float64) * (HARTREE / BOHR)
        return Sample(
            numbers=dataset(grp, "atomic_numbers", path)[()],
            positions=np.asarray(dataset(grp, "conformations", path)[j], np.float64) * BOHR,
            energy=float(np.asarray(dataset(grp, self.energy_key, path)[j]).reshape(())) * HARTREE,
            forces=forces,
            source=source(path, name, j),
        )
