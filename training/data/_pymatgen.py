"""pymatgen ``Structure`` -> :class:`Sample`, shared by the MatBench and QMOF readers."""

from __future__ import annotations

import numpy as np

from .base import DataError, Sample


def structure_to_sample(structure, where: str, properties: dict[str, float], energy_key: str | None = None) -> Sample:
    """A periodic :class:`Sample` of an ordered pymatgen ``Structure``; ``energy`` = ``properties[energy_key]``."""
    if not structure.is_ordered:
        raise DataError(f"{where}: disordered structure (partial occupancies) cannot be a Sample")
    return Sample(
        numbers=np.array([site.specie.Z for site in structure], dtype=np.int64),
        positions=structure.cart_coords,
        cell=structure.lattice.matrix,
        pbc=np.asarray(structure.lattice.pbc, bool),
        energy=None if energy_key is None else properties[energy_key],
        properties=properties,
        source=where,
    )


def structure_from_dict(d: dict, where: str):
    from pymatgen.core import Structure

    try:
        return Structure.from_dict(d)
    except Exception as e:  # malformed dicts fail deep inside pymatgen with KeyError/TypeError/ValueError
        raise DataError(f"{where}: not a pymatgen Structure dict ({type(e).__name__}: {e})") from e
