"""Shared pieces of the HDF5 readers (ANI-1x, Transition-1x, SPICE): opening, and an index of
(group, conformer) pairs read lazily."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import DataError


def open_h5(path: str):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise DataError(f"{path}: not a readable HDF5 file ({e})") from e


def dataset(group, key: str, path: str):
    """``group[key]``, or a DataError naming the file, the group and the missing key."""
    try:
        return group[key]
    except KeyError:
        have = ", ".join(sorted(group.keys()))
        raise DataError(f"{path}:{group.name}: no '{key}' (has: {have})") from None


class ConformerIndex:
    """Flat index over conformers: entry ``i`` is conformer ``conf[i]`` of group ``groups[grp[i]]``."""

    def __init__(self, groups: list[str], grp: np.ndarray, conf: np.ndarray):
        self.groups, self.grp, self.conf = groups, np.asarray(grp, np.int32), np.asarray(conf, np.int32)

    def __len__(self) -> int:
        return len(self.grp)

    def __getitem__(self, i: int) -> tuple[str, int]:
        return self.groups[self.grp[i]], int(self.conf[i])

    @classmethod
    def build(cls, groups: list[str], keep_per_group: list[np.ndarray]) -> ConformerIndex:
        """``keep_per_group[g]`` holds the conformer indices of group ``g`` to keep."""
        grp = np.concatenate([np.full(len(k), g) for g, k in enumerate(keep_per_group)] or [np.zeros(0)])
        conf = np.concatenate([np.asarray(k) for k in keep_per_group] or [np.zeros(0)])
        return cls(groups, grp, conf)


def source(path: str | Path, group: str, conf: int) -> str:
    return f"{path}:{group}[{conf}]"
