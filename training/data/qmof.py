"""QMOF (Rosen et al. 2021) reader: metal-organic frameworks with PBE band gaps.

Two layouts of the published data, in a folder (or given by the json file itself):

* ``qmof.json`` (records with ``qmof_id`` and ``outputs`` -> ``pbe`` -> ``bandgap``, eV) plus
  ``relaxed_structures/<qmof_id>.cif``;
* ``qmof.json`` plus ``qmof_structure_data.json`` (records ``{"qmof_id", "structure": pymatgen dict}``).

Records whose target is missing (``null``) are skipped. Periodic.
"""

from __future__ import annotations

import json
from pathlib import Path

from ._pymatgen import structure_from_dict, structure_to_sample
from .base import DataError, Sample, Samples

__all__ = ["read_qmof"]


def _load_json(path: Path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable json file ({e})") from e


def _dig(record: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(record, dict) or part not in record:
            return None
        record = record[part]
    return record


def read_qmof(path: str | Path, *, target: str = "outputs.pbe.bandgap", as_energy: bool = False) -> Samples:
    """Samples of QMOF: ``properties[<last part of target>]`` (e.g. ``bandgap``, eV) from the dotted ``target``
    path in each ``qmof.json`` record, and ``energy`` too when ``as_energy``. ``path``: the folder or ``qmof.json``.
    Structures (CIF or pymatgen dict) are parsed on access."""
    path = Path(path)
    folder, table = (path, path / "qmof.json") if path.is_dir() else (path.parent, path)
    records = _load_json(table)
    if not isinstance(records, list):
        raise DataError(f"{table}: expected a list of records")
    struct_json, cif_dir = folder / "qmof_structure_data.json", folder / "relaxed_structures"
    structures = None
    if struct_json.is_file():
        structures = {r["qmof_id"]: r["structure"] for r in _load_json(struct_json)}
    elif not cif_dir.is_dir():
        raise DataError(f"{folder}: neither qmof_structure_data.json nor relaxed_structures/ found")
    name = target.split(".")[-1]
    items = []
    for k, rec in enumerate(records):
        qid = rec.get("qmof_id") if isinstance(rec, dict) else None
        if qid is None:
            raise DataError(f"{table}: record {k} has no qmof_id")
        value = _dig(rec, target)
        if value is None:
            continue
        if structures is not None:
            if qid not in structures:
                raise DataError(f"{struct_json}: no structure for {qid}")
            items.append((qid, structures[qid], float(value)))
        else:
            items.append((qid, str(cif_dir / f"{qid}.cif"), float(value)))
    return Samples(length=len(items), getter=_QmofGetter(str(table), items, name, as_energy), name=f"qmof:{folder}")


class _QmofGetter:
    def __init__(self, table: str, items: list[tuple[str, dict | str, float]], name: str, as_energy: bool):
        self.table, self.items, self.name, self.as_energy = table, items, name, as_energy

    def __call__(self, i: int) -> Sample:
        qid, struct, value = self.items[i]
        if isinstance(struct, str):
            where = f"{struct}:{qid}"
            structure = _read_cif(struct, where)
        else:
            where = f"{self.table}:{qid}"
            structure = structure_from_dict(struct, where)
        return structure_to_sample(structure, where, {self.name: value}, self.name if self.as_energy else None)


def _read_cif(path: str, where: str):
    from pymatgen.core import Structure

    if not Path(path).is_file():
        raise DataError(f"{where}: CIF file missing")
    try:
        # primitive=False: keep the cell exactly as QMOF relaxed it.
        return Structure.from_file(path, primitive=False)
    except Exception as e:  # pymatgen's CIF parser raises ValueError/KeyError/... on bad files
        raise DataError(f"{where}: unreadable CIF ({type(e).__name__}: {e})") from e
