"""Dataset readers: each turns a dataset in its published format into :class:`Samples` of :class:`Sample`
in eV / A units. ``read_dataset`` picks the reader from ``format=`` or the file name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .ani1x import read_ani1x
from .ase_files import read_ase
from .base import BOHR, HARTREE, KCAL_MOL, DataError, Sample, Samples
from .matbench import read_matbench
from .md17 import read_md17
from .oc20 import read_oc20
from .qm9 import jmp_qm9_split, qm9_split, read_qm9
from .qmof import read_qmof
from .spice import read_spice
from .stats import fit_atom_refs, normalization, split_indices
from .t1x import read_t1x

__all__ = [
    "BOHR",
    "FORMATS",
    "HARTREE",
    "KCAL_MOL",
    "DataError",
    "Sample",
    "Samples",
    "fit_atom_refs",
    "jmp_qm9_split",
    "normalization",
    "qm9_split",
    "read_ani1x",
    "read_ase",
    "read_dataset",
    "read_matbench",
    "read_md17",
    "read_oc20",
    "read_qm9",
    "read_qmof",
    "read_spice",
    "read_t1x",
    "sniff_hdf5",
    "split_indices",
]

FORMATS: dict[str, Callable[..., Samples]] = {
    "ase": read_ase,
    "oc20": read_oc20,
    "oc22": read_oc20,
    "ani1x": read_ani1x,
    "t1x": read_t1x,
    "spice": read_spice,
    "md17": read_md17,
    "rmd17": read_md17,
    "md22": read_md17,
    "qm9": read_qm9,  # path = qm9pack data folder (None: the installed package)
    "matbench": read_matbench,
    "qmof": read_qmof,
}

_ASE_SUFFIXES = (".extxyz", ".xyz", ".traj", ".db", ".gz", ".bz2", ".xz", ".cif", ".pdb", ".vasp")


def sniff_hdf5(path: str | Path) -> str:
    """``"t1x"``, ``"spice"`` or ``"ani1x"`` from the layout of an HDF5 file."""
    from ._hdf5 import open_h5

    with open_h5(str(path)) as f:
        if "data" in f and len(f["data"]) > 0:
            return "t1x"
        for name in f:
            if "conformations" in f[name]:
                return "spice"
            if "coordinates" in f[name]:
                return "ani1x"
            break
    raise DataError(f"{path}: HDF5 layout not recognised; give format= one of ani1x, t1x, spice")


def _guess(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir():
        if (path / "qmof.json").is_file():
            return "qmof"
        if any(path.glob("*.lmdb")):
            return "oc20"
    elif name.endswith(".lmdb"):
        return "oc20"
    elif name.endswith(".npz"):
        return "md17"
    elif name.endswith((".h5", ".hdf5")):
        return sniff_hdf5(path)
    elif name == "qmof.json":
        return "qmof"
    elif name.endswith((".json", ".json.gz")):
        return "matbench"
    elif name.endswith(_ASE_SUFFIXES):
        return "ase"
    raise DataError(f"{path}: cannot tell the format from the name; give format= one of {', '.join(FORMATS)}")


def read_dataset(path: str | Path, format: str | None = None, **kwargs) -> Samples:
    """Read ``path`` with ``FORMATS[format]``, or the reader its name implies: ``.extxyz``/``.xyz``/``.traj``/
    ``.db``/compressed -> ase, ``.lmdb`` or a folder of them -> oc20, ``.npz`` -> md17, ``.h5``/``.hdf5`` -> the
    layout sniffed (ani1x, t1x, spice), ``.json(.gz)`` -> matbench, ``qmof.json`` or its folder -> qmof.
    ``kwargs`` go to the reader."""
    if format is None:
        format = _guess(Path(path))
    reader = FORMATS.get(format)
    if reader is None:
        raise DataError(f"unknown format '{format}'; known: {', '.join(FORMATS)}")
    return reader(path, **kwargs)
