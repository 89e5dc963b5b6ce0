"""The one record type every reader returns, and the errors readers raise.

A reader turns a file in a dataset's own format into a sequence of :class:`Sample` in eV / A units. Readers may be
lazy (HDF5, LMDB): they return a :class:`Samples` whose ``__getitem__`` reads one record on demand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress

__all__ = ["Sample", "Samples", "DataError", "HARTREE", "KCAL_MOL", "BOHR", "drop_large_forces"]

HARTREE = 27.211386245988  # eV
KCAL_MOL = 0.0433641043  # eV  (1 kcal/mol)
BOHR = 0.529177210903  # A


class DataError(ValueError):
    """A file or record that cannot be used; the message names the file and the record."""


@dataclass
class Sample:
    """One structure with its labels. Units: A, eV, eV/A, eV/A^3 (ASE sign: positive = tensile)."""

    numbers: np.ndarray  # (n,) int64
    positions: np.ndarray  # (n, 3) float64
    cell: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))  # rows = lattice vectors
    pbc: np.ndarray = field(default_factory=lambda: np.zeros(3, bool))
    tags: np.ndarray | None = None  # (n,) OC20 convention 0 bulk / 1 surface / 2 adsorbate
    fixed: np.ndarray | None = None  # (n,) bool
    energy: float | None = None  # total energy, eV
    forces: np.ndarray | None = None  # (n, 3)
    stress: np.ndarray | None = None  # (3, 3)
    properties: dict[str, float] = field(default_factory=dict)  # scalar targets (QM9 gap, band gap, ...)
    source: str = ""  # "file:record" for error messages

    def __post_init__(self):
        self.numbers = np.asarray(self.numbers, dtype=np.int64).reshape(-1)
        n = len(self.numbers)
        self.positions = np.asarray(self.positions, dtype=np.float64)
        if self.positions.shape != (n, 3):
            raise DataError(f"{self.source or 'sample'}: positions have shape {self.positions.shape}, "
                            f"expected ({n}, 3)")
        self.cell = np.asarray(self.cell, dtype=np.float64).reshape(3, 3)
        self.pbc = np.broadcast_to(np.asarray(self.pbc, dtype=bool), (3,)).copy()
        if self.tags is not None:
            self.tags = np.asarray(self.tags, dtype=np.int64).reshape(-1)
            if len(self.tags) != n:
                raise DataError(f"{self.source or 'sample'}: {len(self.tags)} tags for {n} atoms")
        if self.fixed is not None:
            self.fixed = np.asarray(self.fixed, dtype=bool).reshape(-1)
            if len(self.fixed) != n:
                raise DataError(f"{self.source or 'sample'}: {len(self.fixed)} fixed flags for {n} atoms")
        if self.forces is not None:
            self.forces = np.asarray(self.forces, dtype=np.float64)
            if self.forces.shape != (n, 3):
                raise DataError(f"{self.source or 'sample'}: forces have shape {self.forces.shape}, expected ({n}, 3)")
        if self.stress is not None:
            s = np.asarray(self.stress, dtype=np.float64)
            if s.shape == (6,):  # Voigt xx yy zz yz xz xy
                s = voigt_6_to_full_3x3_stress(s)
            if s.shape != (3, 3):
                raise DataError(f"{self.source or 'sample'}: stress has shape {s.shape}, expected (3, 3) or (6,)")
            self.stress = s
        if self.energy is not None:
            self.energy = float(self.energy)
        # a NaN label would otherwise pass as "absent" (the trainers' masks) or poison the fitted references
        for name, value in (("positions", self.positions), ("energy", self.energy), ("forces", self.forces),
                            ("stress", self.stress)):
            if value is not None and not np.all(np.isfinite(value)):
                raise DataError(f"{self.source or 'sample'}: non-finite {name} ({_first_bad(value)})")

    def __len__(self) -> int:
        return len(self.numbers)

    def to_atoms(self):
        """An ``ase.Atoms`` with the labels attached (SinglePointCalculator)."""
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator
        from ase.constraints import FixAtoms

        at = Atoms(numbers=self.numbers, positions=self.positions, cell=self.cell, pbc=self.pbc)
        if self.tags is not None:
            at.set_tags(self.tags)
        if self.fixed is not None and self.fixed.any():
            at.set_constraint(FixAtoms(mask=self.fixed))
        at.info.update(self.properties)
        res = {k: v for k, v in (("energy", self.energy), ("forces", self.forces)) if v is not None}
        if self.stress is not None:
            res["stress"] = full_3x3_to_voigt_6_stress(self.stress)
        if res:
            at.calc = SinglePointCalculator(at, **res)
        return at


def _first_bad(value) -> str:
    """'nan' for a scalar, 'inf at [3, 1]' for an array: where the first non-finite entry is."""
    a = np.asarray(value, dtype=np.float64)
    if a.ndim == 0:
        return str(a)
    idx = [int(i) for i in np.unravel_index(int(np.flatnonzero(~np.isfinite(a))[0]), a.shape)]
    return f"{a[tuple(idx)]} at {idx}"


class Samples(Sequence):
    """A sequence of samples: a list, or ``length`` + ``getter(i)`` for lazy readers. Picklable when the getter is
    (readers use small classes, not closures, so DataLoader workers can use them)."""

    def __init__(self, items: list[Sample] | None = None, *, length: int | None = None,
                 getter: Callable[[int], Sample] | None = None, name: str = ""):
        if (items is None) == (getter is None):
            raise ValueError("give either items or length + getter")
        self._items, self._len, self._get, self.name = items, length, getter, name

    def __len__(self) -> int:
        return len(self._items) if self._items is not None else int(self._len)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Samples([self[j] for j in range(*i.indices(len(self)))], name=self.name)
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        return self._items[i] if self._items is not None else self._get(i)

    def subset(self, indices) -> Samples:
        indices = [int(i) for i in indices]
        return Samples(length=len(indices), getter=_Subset(self, indices), name=self.name)


class _Subset:
    def __init__(self, base: Samples, indices: list[int]):
        self.base, self.indices = base, indices

    def __call__(self, i: int) -> Sample:
        return self.base[self.indices[i]]


def drop_large_forces(samples: Samples, max_abs_force: float) -> tuple[Samples, list[str]]:
    """The samples whose largest per-atom force norm ``|F_i|`` is at most ``max_abs_force`` (eV/A), and the
    sources of those left out (unphysical frames: a failed SCF, atoms on top of each other). Frames without forces
    are kept. Reads every record once (lazy readers too)."""
    if not max_abs_force > 0:
        raise DataError(f"max_abs_force must be positive, got {max_abs_force}")
    keep, dropped = [], []
    for i in range(len(samples)):
        s = samples[i]
        if s.forces is not None and len(s) and float(np.linalg.norm(s.forces, axis=1).max()) > max_abs_force:
            dropped.append(s.source or f"#{i}")
        else:
            keep.append(i)
    if not dropped:
        return samples, []
    return samples.subset(keep), dropped
