"""OC20 / OC22 LMDB reader (the Open Catalyst Project's S2EF / IS2RE files).

Each LMDB holds ``str(i).encode("ascii") -> pickle(record)``, the record a torch-geometric ``Data`` (or a dict)
with ``pos`` (n, 3) A, ``atomic_numbers`` (n,), ``cell`` (1, 3, 3) A, ``natoms``, ``tags`` (0 bulk / 1 surface /
2 adsorbate), ``fixed`` (n,), energy ``y`` or ``energy`` in eV, forces ``force`` or ``forces`` in eV/A, ``sid``,
``fid``. Some files also store metadata under non-integer keys (``length``), which are skipped. Periodic in 3D.

Unpickling a ``Data`` record needs ``torch_geometric`` installed (the ``train`` extra). Records are unpickled with an
allow-list (:mod:`.safe_pickle`): a record referencing anything but ``Data``, tensors, numpy arrays and builtin
containers (e.g. ``os.system``) is refused with a :class:`DataError` naming the file, key and global, unexecuted.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._lazy import PerProcess
from .base import DataError, Sample, Samples
from .safe_pickle import RefusedGlobal, safe_loads

__all__ = ["lmdb_files", "read_oc20"]

_ENERGY_KEYS = ("y", "energy")
_FORCES_KEYS = ("force", "forces")


def lmdb_files(path: str | Path) -> list[Path]:
    """The ``*.lmdb`` files of a directory (sorted), or ``[path]`` for a single file."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.lmdb"))
        if not files:
            raise DataError(f"{path}: directory has no *.lmdb files")
        return files
    if not path.is_file():
        raise DataError(f"{path}: no such file or directory")
    return [path]


_OPEN: dict[tuple[int, str], object] = {}


def open_lmdb(path: str):
    """A read-only environment, shared within a process: py-lmdb refuses to open one file twice in a process, which
    two copies of the same dataset (e.g. an unpickled one) would otherwise do."""
    import lmdb

    key = (os.getpid(), os.path.realpath(path))
    if key not in _OPEN:
        for inherited in [k for k in _OPEN if k[1] == key[1]]:
            # A forked worker inherits the parent's environment, which py-lmdb counts as open here too. Closing the
            # copy only unmaps this process's view (lock=False: no shared reader slot) and lets us open our own.
            _OPEN.pop(inherited).close()
        try:
            # subdir=False: OC20 ships single-file LMDBs; lock=False: read-only use from many DataLoader workers.
            _OPEN[key] = lmdb.open(path, subdir=False, readonly=True, lock=False, readahead=False, meminit=False,
                                   max_readers=1)
        except lmdb.Error as e:
            raise DataError(f"{path}: not a readable LMDB file ({e})") from e
    return _OPEN[key]


def read_oc20(path: str | Path, *, energy_key: str | None = None, forces_key: str | None = None) -> Samples:
    """Lazy samples of an OC20/OC22 LMDB file or directory of ``*.lmdb`` files (in sorted file order, then key
    order). ``energy_key``/``forces_key`` default to the first of ``y``/``energy`` and ``force``/``forces`` present
    in a record (IS2RE files: ``energy_key="y_relaxed"``). Energy eV, forces eV/A, tags and fixed kept, PBC."""
    files = lmdb_files(path)
    keys = []
    for file in files:
        with open_lmdb(str(file)).begin() as txn:
            ints = [int(k) for k in txn.cursor().iternext(values=False) if k.isdigit()]
        keys.append(np.sort(np.asarray(ints, dtype=np.int64)))
    return Samples(length=sum(len(k) for k in keys), getter=_Oc20Getter(files, keys, energy_key, forces_key),
                   name=f"oc20:{path}")


class _Oc20Getter:
    def __init__(self, files: list[Path], keys: list[np.ndarray], energy_key: str | None, forces_key: str | None):
        self.envs = [PerProcess(open_lmdb, str(f)) for f in files]
        self.keys = keys
        self.offsets = np.cumsum([0] + [len(k) for k in keys])
        self.energy_key, self.forces_key = energy_key, forces_key

    def __call__(self, i: int) -> Sample:
        f = int(np.searchsorted(self.offsets, i, side="right") - 1)
        key = str(int(self.keys[f][i - self.offsets[f]])).encode("ascii")
        env = self.envs[f]
        where = f"{env.path}:{key.decode()}"
        with env.handle().begin() as txn:
            raw = txn.get(key)
        if raw is None:
            raise DataError(f"{where}: key vanished from the LMDB")
        try:
            # pickle is the format of these datasets; a downloaded file is not trusted to run code: allow-list only.
            record = safe_loads(raw)
        except RefusedGlobal as e:
            raise DataError(f"{where}: record refers to '{e.name}', which a dataset record may not (allowed: "
                            "torch-geometric Data, tensors, numpy arrays, builtin containers); refused, nothing "
                            "was run") from None
        except Exception as e:  # unpickling surfaces anything: truncated bytes, missing torch_geometric, ...
            raise DataError(f"{where}: record does not unpickle ({type(e).__name__}: {e})") from e
        return record_to_sample(record, where, self.energy_key, self.forces_key)


def _fields(record) -> dict:
    """The attributes of a torch-geometric ``Data`` (any version) or a dict."""
    if isinstance(record, dict):
        return record
    d = getattr(record, "__dict__", None)
    if d is None:
        raise TypeError(f"unexpected record type {type(record).__name__}")
    if "_store" in d:  # PyG >= 2.0
        return dict(record._store)
    return {k: v for k, v in d.items() if v is not None}  # Data pickled by PyG 1.x: plain attributes


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _first(fields: dict, key: str | None, candidates: tuple[str, ...]):
    for k in (key,) if key is not None else candidates:
        if fields.get(k) is not None:
            return fields[k]
    return None


def record_to_sample(record, where: str, energy_key: str | None = None, forces_key: str | None = None) -> Sample:
    """An OC20-style record (``Data`` or dict) as a :class:`Sample`; errors name ``where``."""
    try:
        fields = _fields(record)
        pos = _np(fields["pos"]).astype(np.float64)
        numbers = _np(fields["atomic_numbers"]).astype(np.int64)
    except (KeyError, TypeError) as e:
        raise DataError(f"{where}: not an OC20 record ({type(e).__name__}: {e})") from e
    cell = fields.get("cell")
    energy = _first(fields, energy_key, _ENERGY_KEYS)
    if energy_key is not None and energy is None:
        raise DataError(f"{where}: no '{energy_key}' in record (has: {', '.join(sorted(fields))})")
    forces = _first(fields, forces_key, _FORCES_KEYS)
    tags, fixed = fields.get("tags"), fields.get("fixed")
    source = where
    if "sid" in fields:
        source += f" (sid={_scalar(fields['sid'])}, fid={_scalar(fields.get('fid'))})"
    return Sample(
        numbers=numbers,
        positions=pos,
        cell=np.zeros((3, 3)) if cell is None else _np(cell).reshape(3, 3),
        pbc=np.ones(3, bool),
        tags=None if tags is None else _np(tags),
        fixed=None if fixed is None else _np(fixed),
        energy=None if energy is None else float(_np(energy).reshape(())),
        forces=None if forces is None else _np(forces),
        source=source,
    )


def _scalar(x):
    if x is None or isinstance(x, (str, int)):
        return x
    a = _np(x)
    return a.item() if a.size == 1 else a.tolist()
