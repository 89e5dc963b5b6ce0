"""Any file ASE reads: extxyz (also ``.gz``/``.bz2``/``.xz`` compressed), ``.traj``, VASP outputs, ... and ASE
databases (``.db``).

Labels come from ``atoms.info``/``atoms.arrays`` under ``energy_key``/``forces_key``/``stress_key`` (MACE's
``REF_energy`` convention), else, for the standard names ``energy``/``forces``/``stress``, from the attached
calculator (ASE's extxyz reader puts those there). Units are ASE's: eV, eV/A, eV/A^3. Other scalar ``info`` entries
(and an ASE db row's key-value pairs) become ``properties``; tags and ``FixAtoms`` constraints are kept.
"""

from __future__ import annotations

import numbers as _numbers
from pathlib import Path

import numpy as np

from ._lazy import PerProcess
from .base import DataError, Sample, Samples

__all__ = ["atoms_to_sample", "read_ase", "check_extxyz_text"]

_CALC_KEYS = {"energy": "energy", "forces": "forces", "stress": "stress"}


def read_ase(path: str | Path, *, format: str | None = None, index: str | int | slice = ":",
             energy_key: str = "energy", forces_key: str = "forces", stress_key: str = "stress",
             require: tuple[str, ...] = ()) -> Samples:
    """Samples of an ASE-readable file. ``.db`` files are read lazily (one row per access, connection opened per
    process); other formats are parsed whole with ``ase.io.read(path, index, format)``.

    ``require``: labels every frame must have (subset of ``"energy"``, ``"forces"``, ``"stress"``); a frame lacking one
    raises :class:`DataError` naming the file and frame.
    """
    path = str(path)
    keys = dict(energy_key=energy_key, forces_key=forces_key, stress_key=stress_key, require=tuple(require))
    unknown = set(require) - set(_CALC_KEYS)
    if unknown:
        raise ValueError(f"require: unknown labels {sorted(unknown)}; known: {sorted(_CALC_KEYS)}")
    if format == "db" or (format is None and path.endswith(".db")):
        try:
            ids = [row.id for row in _open_db(path).select(columns=["id"])]
        except DataError:
            raise
        except Exception as e:  # sqlite3.DatabaseError for a file that is not a database, ...
            raise DataError(f"{path}: not a readable ASE database ({type(e).__name__}: {e})") from e
        samples = Samples(length=len(ids), getter=_DbGetter(path, ids, keys), name=f"ase:{path}")
        for i in range(len(samples)) if require else ():  # fail at load time, not mid-epoch
            samples[i]
        return samples
    import ase.io

    if not Path(path).is_file():
        raise DataError(f"{path}: no such file")
    try:
        fmt = format or ase.io.formats.filetype(path, read=False)
        text = None
        if fmt in ("extxyz", "xyz"):
            # read the text once: checked here (ASE names no frame in its errors and drops extra columns
            # silently), then parsed from memory. Compressed: ase seeks frame by frame, and in a compressed stream
            # every seek decompresses from the start (quadratic time: minutes for 10k frames).
            import bz2
            import gzip
            import lzma

            opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(Path(path).suffix, open)
            with opener(path, "rt") as fh:
                text = fh.read()
    except Exception as e:  # a corrupt compressed stream, undecodable bytes, ...
        raise DataError(f"{path}: cannot read ({type(e).__name__}: {e})") from e
    if text is not None:
        check_extxyz_text(text, path)
    try:
        if text is not None:
            import io

            frames = ase.io.read(io.StringIO(text), index=index, format="extxyz")
        else:
            frames = ase.io.read(path, index=index, format=format)
    except Exception as e:  # ase.io raises whatever its parsers raise (ValueError, IndexError, StopIteration ...)
        raise DataError(f"{path}: ase.io.read failed ({type(e).__name__}: {e})") from e
    if not isinstance(frames, list):
        frames = [frames]
    return Samples([atoms_to_sample(a, f"{path}:{i}", **keys) for i, a in enumerate(frames)], name=f"ase:{path}")


def check_extxyz_text(text: str, path: str) -> None:
    """Raise :class:`DataError` naming the frame and line where an (ext)xyz text is inconsistent: an atom count that
    is not a number or does not match the atom lines that follow, or an atom line whose number of columns differs
    from what the frame's ``Properties=`` declares (ASE would read the first columns and drop the rest silently).
    About 5 % of the time ASE takes to parse the same text."""
    from ase.io.extxyz import key_val_str_to_dict

    lines = text.splitlines()
    i, frame = 0, 0
    while i < len(lines):
        if not lines[i].strip():  # blank lines between or after frames
            i += 1
            continue
        where = f"{path}: frame {frame} (line {i + 1})"
        try:
            n = int(lines[i].split()[0])
        except ValueError:
            hint = f"; does frame {frame - 1} have more atom lines than its count?" if frame else ""
            raise DataError(f"{where}: expected the atom count, got {lines[i].strip()[:60]!r}{hint}") from None
        ncol = None
        if i + 1 < len(lines):
            try:
                info = key_val_str_to_dict(lines[i + 1])
            except Exception as e:  # noqa: BLE001 - ase raises what its tokenizer raises
                raise DataError(f"{where}: unreadable comment line ({type(e).__name__}: {e})") from e
            props = info.get("Properties", info.get("properties"))
            if isinstance(props, str):
                fields = props.split(":")
                try:
                    ncol = sum(int(c) for c in fields[2::3])
                except ValueError:
                    raise DataError(f"{where}: unreadable Properties={props}") from None
        atoms = lines[i + 2:i + 2 + n]
        if len(atoms) < n:
            raise DataError(f"{where}: {n} atoms declared but the file ends after {len(atoms)} atom lines")
        for j, line in enumerate(atoms):
            k = len(line.split())
            if (ncol is not None and k != ncol) or k < 4:
                hint = f"; is the atom count {n} too large?" if k <= 1 else ""
                declared = f"Properties={props} declares {ncol}" if ncol is not None else "an xyz atom line has 4"
                raise DataError(f"{path}: frame {frame}, atom {j} (line {i + 3 + j}): {k} columns, {declared}{hint}")
        i += 2 + n
        frame += 1


def _open_db(path: str):
    import ase.db

    if not Path(path).is_file():
        raise DataError(f"{path}: no such file")
    try:
        return ase.db.connect(path, type="db")
    except Exception as e:
        raise DataError(f"{path}: not an ASE database ({e})") from e


class _DbGetter:
    def __init__(self, path: str, ids: list[int], keys: dict):
        self.db, self.ids, self.keys = PerProcess(_open_db, path), ids, keys

    def __call__(self, i: int) -> Sample:
        row = self.db.handle().get(id=self.ids[i])
        atoms = row.toatoms()
        atoms.info.update(row.key_value_pairs)
        return atoms_to_sample(atoms, f"{self.db.path}:id={self.ids[i]}", **self.keys)


def _label(atoms, key: str, place: dict):
    if key in place:
        return place[key]
    calc = atoms.calc
    if key in _CALC_KEYS and calc is not None and key in getattr(calc, "results", {}):
        return calc.results[key]
    return None


def atoms_to_sample(atoms, where: str, *, energy_key: str = "energy", forces_key: str = "forces",
                    stress_key: str = "stress", require: tuple[str, ...] = ()) -> Sample:
    """An ``ase.Atoms`` (labels as described in the module docstring) as a :class:`Sample`."""
    from ase.constraints import FixAtoms

    energy = _label(atoms, energy_key, atoms.info)
    forces = _label(atoms, forces_key, atoms.arrays)
    stress = _label(atoms, stress_key, atoms.info)
    for name, value, key in (("energy", energy, energy_key), ("forces", forces, forces_key),
                             ("stress", stress, stress_key)):
        if name in require and value is None:
            raise DataError(f"{where}: no {name} (looked for '{key}' in info/arrays"
                            + (" and the calculator)" if key in _CALC_KEYS else ")"))
    if stress is not None:
        stress = np.asarray(stress, np.float64)
        stress = stress.reshape(3, 3) if stress.size == 9 else stress
    fixed = None
    fix = [c for c in atoms.constraints if isinstance(c, FixAtoms)]
    if fix:
        fixed = np.zeros(len(atoms), bool)
        for c in fix:
            fixed[c.get_indices()] = True
    label_keys = {energy_key, stress_key}
    properties = {k: float(v) for k, v in atoms.info.items()
                  if k not in label_keys and isinstance(v, _numbers.Real) and not isinstance(v, bool)}
    return Sample(
        numbers=atoms.numbers,
        positions=atoms.positions,
        cell=atoms.cell.array,
        pbc=atoms.pbc,
        tags=atoms.arrays.get("tags"),
        fixed=fixed,
        energy=None if energy is None else float(np.asarray(energy).reshape(())),
        forces=forces,
        stress=stress,
        properties=properties,
        source=where,
    )
