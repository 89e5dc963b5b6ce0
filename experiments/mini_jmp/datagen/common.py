"""Shared machinery of the mini-JMP generators: deterministic gzip extxyz, labelling, and a resumable chunk runner.

Every generator describes its work as a list of *units* (one trajectory, one molecule, one structure), each with a
fixed split assigned up front from the seed, and a function ``make_frames(unit) -> list[Atoms]`` that draws all its
randomness from ``unit_rng(seed, unit_id)``. Units are processed in chunks; each finished chunk is written atomically
to ``<out>/.chunks/`` so a restarted run skips it. When all chunks exist they are merged into
``<out>/{train,val,test}.extxyz.gz`` plus ``<out>/meta.json`` and the chunk folder is removed; a later run with the
same parameters is then a no-op.

Files are byte-for-byte reproducible for a given seed and size (gzip header without name or mtime).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from jmp_calc.io.hub import sha256sum as sha256  # noqa: F401  (sha256 of a file, used by all.py)

SPLITS = ("train", "val", "test")
ROOT = Path(__file__).resolve().parents[3]


def unit_rng(seed: int, unit_id: int, stream: int = 0) -> np.random.Generator:
    """Independent generator for one unit: results do not depend on which units ran before (resumability)."""
    return np.random.default_rng([int(seed), int(unit_id), int(stream)])


def assign_splits(n: int, seed: int, fractions=(0.9, 0.05, 0.05)) -> list[str]:
    """Split label of each of ``n`` units from a seeded permutation (at least one val and test unit when n >= 3)."""
    order = np.random.default_rng([int(seed), 7919]).permutation(n)
    n_val = int(round(fractions[1] * n))
    n_test = int(round(fractions[2] * n))
    if n >= 3:
        n_val, n_test = max(1, n_val), max(1, n_test)
    labels = ["train"] * n
    for pos, i in enumerate(order):
        if pos < n_test:
            labels[i] = "test"
        elif pos < n_test + n_val:
            labels[i] = "val"
    return labels


def extxyz_safe(text: str) -> str:
    """ASE's extxyz reader drops single backslashes in string values (stereo SMILES like C/C=C\\C); the writer
    does not escape them, so escape here. tests/test_datagen.py checks the round trip."""
    return text.replace("\\", "\\\\")


def extxyz_text(frames) -> str:
    from ase.io import write

    buf = io.StringIO()
    if len(frames):
        write(buf, list(frames), format="extxyz")
    return buf.getvalue()


def write_gz_text(path: Path, text: str) -> None:
    """Atomic, deterministic gzip (no file name or mtime in the header)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0,
                                                        compresslevel=9) as gz:
            gz.write(text.encode())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_extxyz_gz(path: Path, frames) -> None:
    """Atomic, deterministic gzip-compressed extxyz."""
    write_gz_text(path, extxyz_text(frames))


def read_extxyz_gz(path: Path):
    from ase.io import read

    with gzip.open(path, "rt") as fh:
        text = fh.read()
    if not text.strip():
        return []
    return read(io.StringIO(text), index=":", format="extxyz")


def write_json(path: Path, obj) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=1, sort_keys=True)
            fh.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def single_point(atoms, calc=None, stress: bool | None = None, **info):
    """Copy of ``atoms`` with energy/forces (and stress for 3D-periodic cells) frozen in a SinglePointCalculator.

    Forces are stored without constraints applied (as OC20 does; read them with ``get_forces(apply_constraint=False)``).
    """
    from ase.calculators.singlepoint import SinglePointCalculator

    if calc is None:
        calc = atoms.calc
    work = atoms.copy()
    work.calc = calc
    results = {"energy": float(work.get_potential_energy()),
               "forces": np.array(work.get_forces(apply_constraint=False), dtype=float)}
    if stress is None:
        stress = bool(work.pbc.all())
    if stress:
        results["stress"] = np.array(work.get_stress(), dtype=float)
    if not np.isfinite(results["energy"]) or not np.all(np.isfinite(results["forces"])):
        raise FloatingPointError("non-finite energy or forces")
    frame = atoms.copy()
    frame.calc = SinglePointCalculator(frame, **results)
    frame.info.pop("adsorbate_info", None)
    frame.info.update(info)
    return frame


def xtb_calc(method: str = "GFN2-xTB"):
    from tblite.ase import TBLite

    return TBLite(method=method, verbosity=0)


def command_line(module: str, out: Path, **kwargs) -> str:
    parts = [f"python -m experiments.mini_jmp.datagen.{module}", f"--out {out}"]
    parts += [f"--{k.replace('_', '-')} {v}" for k, v in kwargs.items()]
    return " ".join(parts)


def run_chunked(out: Path, *, dataset: str, units: list[dict], make_frames: Callable[[dict], list],
                chunk_size: int, params: dict, method: str, command: str, desc: str | None = None,
                stop_after_chunks: int | None = None, keep_chunks: bool = False, extra_meta: dict | None = None,
                progress: bool = True) -> dict | None:
    """Generate ``units`` in chunks under ``out`` (resumable) and merge them into split files.

    ``units``: dicts with at least ``id`` and ``split``. ``make_frames(unit)`` returns labelled Atoms; the runner adds
    ``info["dataset"]`` and ``info["split"]``. ``params`` identify the run: a finished run with equal params is
    skipped, chunks of a run with different params raise (delete the folder to regenerate).
    ``stop_after_chunks`` (tests) stops after computing that many new chunks and returns None.
    Returns the meta dict written to ``out/meta.json``.
    """
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    params = json.loads(json.dumps(params))
    meta_path = out / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("params") == params and all((out / f["file"]).exists() for f in meta["files"]):
            print(f"{dataset}: already complete in {out} ({meta['frames']} frames), skipping", file=sys.stderr)
            return meta
    chunk_dir = out / ".chunks"
    chunk_dir.mkdir(exist_ok=True)
    pfile = chunk_dir / "params.json"
    if pfile.exists():
        old = json.loads(pfile.read_text())
        if old != params:
            raise RuntimeError(f"{chunk_dir} holds chunks of a run with other parameters {old}; delete it to restart")
    else:
        write_json(pfile, params)

    n_chunks = (len(units) + chunk_size - 1) // chunk_size
    done = {c for c in range(n_chunks) if (chunk_dir / f"c{c:05d}.json").exists()}
    n_done_units = sum(len(units[c * chunk_size:(c + 1) * chunk_size]) for c in done)
    bar = tqdm(total=len(units), initial=n_done_units, desc=desc or dataset, unit="unit", disable=not progress,
               mininterval=5.0, file=sys.stderr)
    frames_total = sum(json.loads((chunk_dir / f"c{c:05d}.json").read_text())["frames"] for c in done)
    new = 0
    for c in range(n_chunks):
        if c in done:
            continue
        if stop_after_chunks is not None and new >= stop_after_chunks:
            bar.close()
            return None
        t0 = time.perf_counter()
        frames, failed = [], 0
        for unit in units[c * chunk_size:(c + 1) * chunk_size]:
            unit_frames = make_frames(unit)
            if not unit_frames:
                failed += 1
            for f in unit_frames:
                f.info["dataset"] = dataset
                f.info.setdefault("split", unit["split"])  # a unit may spread its frames over splits
                f.info.setdefault("unit", int(unit["id"]))
            frames += unit_frames
            bar.update(1)
        counts, split_units = {}, {}
        for split in SPLITS:
            sel = [f for f in frames if f.info["split"] == split]
            counts[split] = len(sel)
            split_units[split] = len({int(f.info["unit"]) for f in sel})
            if sel:
                write_extxyz_gz(chunk_dir / f"c{c:05d}.{split}.extxyz.gz", sel)
        write_json(chunk_dir / f"c{c:05d}.json", {"frames": len(frames), "split_frames": counts,
                                                 "split_units": split_units,
                                                 "units": len(units[c * chunk_size:(c + 1) * chunk_size]),
                                                 "failed_units": failed, "wall_s": time.perf_counter() - t0})
        frames_total += len(frames)
        new += 1
        bar.set_postfix(frames=frames_total)
    bar.close()

    # merge: concatenate the chunk texts (no parse / re-write round trip)
    wall, failed = 0.0, 0
    texts = {s: [] for s in SPLITS}
    counts = {s: 0 for s in SPLITS}
    n_units = {s: 0 for s in SPLITS}
    for c in range(n_chunks):
        cmeta = json.loads((chunk_dir / f"c{c:05d}.json").read_text())
        wall += cmeta["wall_s"]
        failed += cmeta["failed_units"]
        for split in SPLITS:
            if cmeta["split_frames"][split]:
                with gzip.open(chunk_dir / f"c{c:05d}.{split}.extxyz.gz", "rt") as fh:
                    texts[split].append(fh.read())
                counts[split] += cmeta["split_frames"][split]
                n_units[split] += cmeta["split_units"][split]
    files = []
    for split in SPLITS:
        if not counts[split]:
            continue
        name = f"{split}.extxyz.gz"
        write_gz_text(out / name, "".join(texts[split]))
        files.append({"file": name, "split": split, "frames": counts[split],
                      "units": n_units[split]})
    meta = {"dataset": dataset, "params": params, "method": method, "command": command, "wall_s": round(wall, 1),
            "frames": sum(f["frames"] for f in files), "units": len(units), "failed_units": failed, "files": files}
    meta.update(extra_meta or {})
    write_json(meta_path, meta)
    if not keep_chunks:
        shutil.rmtree(chunk_dir)
    print(f"{dataset}: {meta['frames']} frames in {wall:.0f} s -> {out}", file=sys.stderr)
    return meta


def langevin(atoms, temperature_K: float, timestep_fs: float, seed: int, friction_per_fs: float = 0.02):
    """Langevin integrator on ``atoms`` (calculator attached) with Maxwell-Boltzmann initial velocities."""
    import warnings

    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    nprng = np.random.RandomState(seed % (1 << 31))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=nprng)
    return Langevin(atoms, timestep=timestep_fs * units.fs, temperature_K=temperature_K,
                    friction=friction_per_fs / units.fs, fixcm=False, rng=nprng)
