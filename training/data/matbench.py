"""MatBench (Dunn et al. 2020) ``.json``/``.json.gz`` reader.

The file is a pandas "split" table: ``{"index": [...], "columns": ["structure", "<target>"], "data":
[[structure_dict, target], ...]}``, each structure a pymatgen ``Structure.as_dict()``. Targets are kept in the
dataset's own units (eV/atom for ``e_form``, eV for ``gap pbe``, log10(GPa) for ``log_kvrh`` ...). Periodic.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from ._pymatgen import structure_from_dict, structure_to_sample
from .base import DataError, Sample, Samples

__all__ = ["read_matbench"]


def read_matbench(path: str | Path, *, target: str | None = None, as_energy: bool = False) -> Samples:
    """Samples of a MatBench file; the target column (``target``, default: the one non-structure column) is
    ``properties[<column name>]``, and also ``energy`` when ``as_energy``. Structures are converted on access."""
    path = str(path)
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt") as fh:
            table = json.load(fh)
        columns, data, index = table["columns"], table["data"], table.get("index", list(range(len(table["data"]))))
    except (OSError, EOFError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a MatBench json table ({type(e).__name__}: {e})") from e
    if "structure" not in columns:
        raise DataError(f"{path}: no 'structure' column (columns: {columns})")
    targets = [c for c in columns if c != "structure"]
    if target is None:
        if len(targets) != 1:
            raise DataError(f"{path}: give target= one of {targets}")
        target = targets[0]
    if target not in columns:
        raise DataError(f"{path}: no column '{target}' (columns: {columns})")
    s_col, t_col = columns.index("structure"), columns.index(target)
    records = [(str(index[i]), row[s_col], float(row[t_col])) for i, row in enumerate(data)]
    return Samples(length=len(records), getter=_MatbenchGetter(path, records, target, as_energy),
                   name=f"matbench:{path}")


class _MatbenchGetter:
    def __init__(self, path: str, records: list[tuple[str, dict, float]], target: str, as_energy: bool):
        self.path, self.records, self.target, self.as_energy = path, records, target, as_energy

    def __call__(self, i: int) -> Sample:
        name, struct, value = self.records[i]
        where = f"{self.path}:{name}"
        return structure_to_sample(structure_from_dict(struct, where), where, {self.target: value},
                                   self.target if self.as_energy else None)
