"""Dataset statistics: per-element linear energy references, normalisation constants, and index splits.

JMP fits, per dataset, a linear reference ``E_ref(structure) = sum_atoms ref[Z]`` by least squares of the total
energy on element counts, trains on ``E - E_ref``, and scales targets by dataset statistics.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from .base import DataError, Sample

__all__ = ["fit_atom_refs", "fit_refs", "normalization", "referenced_energy", "split_indices"]


def _target(sample: Sample, key: str) -> float:
    value = sample.energy if key == "energy" else sample.properties.get(key)
    if value is None:
        raise DataError(f"{sample.source or 'sample'}: no '{key}' to fit references to")
    return float(value)


def fit_atom_refs(samples: Sequence[Sample], key: str = "energy") -> dict[int, float]:
    """Per-element references ``{Z: eV per atom}`` minimising ``sum_s (y_s - sum_Z count_sZ ref_Z)^2``, where ``y``
    is ``energy`` or ``properties[key]``. Warns when the element counts are rank deficient (e.g. every structure
    has the same composition): the minimum-norm solution is returned then, and only its sums are meaningful."""
    return fit_refs([s.numbers for s in samples], [_target(s, key) for s in samples], stacklevel=3)


def fit_refs(numbers: Sequence[np.ndarray], y: Sequence[float], stacklevel: int = 2) -> dict[int, float]:
    """:func:`fit_atom_refs` of structures given by their atomic numbers and targets ``y``."""
    if not len(numbers):
        raise ValueError("fit_atom_refs: no samples")
    a = np.asarray([np.bincount(np.asarray(n), minlength=119) for n in numbers], np.float64)
    elements = np.flatnonzero(a.sum(0))
    a = a[:, elements]
    coef, _, rank, _ = np.linalg.lstsq(a, np.asarray(y, np.float64), rcond=None)
    if rank < len(elements):
        warnings.warn(f"fit_atom_refs: element counts have rank {rank} < {len(elements)} elements; references are "
                      "not unique (minimum-norm solution)", RuntimeWarning, stacklevel=stacklevel)
    return {int(z): float(c) for z, c in zip(elements, coef)}


def referenced_energy(sample: Sample, atom_refs: Mapping[int, float], key: str = "energy") -> float:
    """``y - sum_atoms atom_refs[Z]``; elements without a reference count as 0."""
    return _target(sample, key) - float(sum(atom_refs.get(int(z), 0.0) for z in sample.numbers))


def normalization(samples: Sequence[Sample], atom_refs: Mapping[int, float], key: str = "energy") -> dict:
    """Statistics for scaling targets. Returns ``energy_per_atom_mean``/``energy_per_atom_std`` of the referenced
    energy per atom (eV/atom), ``forces_rms`` (eV/A; RMS of all force components, JMP's force scale; None when no
    sample has forces), ``n_samples`` and ``n_force_samples``."""
    per_atom, sq, n_comp, n_f = [], 0.0, 0, 0
    for s in samples:
        per_atom.append(referenced_energy(s, atom_refs, key) / len(s))
        if s.forces is not None:
            sq += float(np.square(s.forces).sum())
            n_comp += s.forces.size
            n_f += 1
    if not per_atom:
        raise ValueError("normalization: no samples")
    e = np.asarray(per_atom)
    return {
        "energy_per_atom_mean": float(e.mean()),
        "energy_per_atom_std": float(e.std()),
        "forces_rms": float(np.sqrt(sq / n_comp)) if n_comp else None,
        "n_samples": len(e),
        "n_force_samples": n_f,
    }


def split_indices(n: int, sizes: Mapping[str, int | float | None], seed: int = 0) -> dict[str, np.ndarray]:
    """A deterministic random partition of ``range(n)``: ``sizes`` maps split name -> count (int), fraction of ``n``
    (float in [0, 1], floored), or None for "the rest" (at most one). Splits are taken in the mapping's order from
    ``np.random.default_rng(seed).permutation(n)``; indices not assigned to any split are left out.

    >>> split_indices(1000, {"train": 950, "val": 50}, seed=0)["val"].shape
    (50,)
    """
    counts: dict[str, int | None] = {}
    for name, size in sizes.items():
        if size is None:
            counts[name] = None
        elif isinstance(size, (int, np.integer)) and not isinstance(size, bool):
            counts[name] = int(size)
        elif isinstance(size, float) and 0.0 <= size <= 1.0:
            counts[name] = int(np.floor(size * n + 1e-9))
        else:
            raise ValueError(f"split_indices: size of '{name}' must be an int, a fraction in [0, 1] or None, got {size!r}")
        if counts[name] is not None and counts[name] < 0:
            raise ValueError(f"split_indices: negative size for '{name}'")
    rest = [k for k, v in counts.items() if v is None]
    if len(rest) > 1:
        raise ValueError(f"split_indices: only one split can take the rest, got {rest}")
    fixed = sum(v for v in counts.values() if v is not None)
    if fixed > n:
        raise ValueError(f"split_indices: sizes add up to {fixed} > {n}")
    if rest:
        counts[rest[0]] = n - fixed
    perm = np.random.default_rng(seed).permutation(n)
    out, start = {}, 0
    for name, c in counts.items():
        out[name] = perm[start:start + c]
        start += c
    return out
