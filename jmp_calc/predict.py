"""``python -m jmp_calc.predict``: evaluate (or relax) every structure of ASE-readable files, to extxyz.

    python -m jmp_calc.predict structures.extxyz -o predicted.extxyz
    python -m jmp_calc.predict a.cif b.traj -o relaxed.extxyz --relax --fmax 0.05 --steps 200
    torchrun --nproc-per-node 4 -m jmp_calc.predict big.extxyz -o predicted.extxyz

Structures are read lazily (``ase.io.iread``) in blocks of ``--batch-size``; one block at a time is evaluated with
:meth:`JMPCalculator.predict_many` (or relaxed with :func:`jmp_calc.simulate.relax_many`), so memory is that of
one block. Each finished block is written to ``OUT.parts/bNNNNNNNNN.extxyz`` (a temporary file, fsync, rename: a
part is complete or absent), its failures to ``bNNNNNNNNN.errors.jsonl`` beside it. A killed run started again
with the same arguments skips the blocks whose parts exist. At the end the parts are joined in input order into
``OUT`` and ``OUT.errors.jsonl`` (one JSON line per structure that failed: ``index``, ``source``, ``error``), and
``OUT.parts`` is removed.

A structure that fails validation (an :class:`~jmp_calc.errors.InputError`: unknown element, overlapping atoms,
degenerate cell, ...) or gives a non-finite result is recorded in the sidecar (``error``: the reason that
``predict_many`` / ``relax_many`` give with ``on_error="skip"``) and skipped; the others of its block are evaluated
as without it. Output frames keep the input's arrays and info, plus ``input_index`` (0-based over all
inputs) and the results as extxyz ``energy``/``forces``/``stress`` (relaxations: the relaxed structure, with
``relax_converged`` and ``relax_steps``).

Under ``torchrun`` (``WORLD_SIZE`` > 1) block ``b`` is evaluated by rank ``b % WORLD_SIZE`` (gloo on CPU, NCCL and
``cuda:LOCAL_RANK`` on GPU) and rank 0 joins the parts after a barrier: the output equals a single-process run's,
byte for byte, since every block has the same structures either way.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import warnings
from pathlib import Path

from .errors import InputError

__all__ = ["main", "Options"]


@dataclasses.dataclass(frozen=True)
class Options:
    """What determines a run's output (stored in ``OUT.parts/meta.json``; a resume must match it)."""

    inputs: tuple[str, ...]
    model: str | None = None
    head: str | None = None
    forces: str = "auto"
    dtype: str = "float32"
    batch_size: int = 64
    relax: bool = False
    fmax: float = 0.05
    steps: int = 200
    cell: bool = False
    optimizer: str = "FIRE"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jmp_calc.predict",
                                description="Evaluate (or relax) every structure of ASE-readable files; write extxyz.",
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="ASE-readable structure files (extxyz, cif, traj, POSCAR, ...)")
    p.add_argument("-o", "--output", required=True, help="output extxyz file; failures go to OUTPUT.errors.jsonl")
    p.add_argument("--model", default=None, help="model name, directory or file (default: the shipped model)")
    p.add_argument("--head", default=None, help="head name (default: the model's default / per-structure rules)")
    p.add_argument("--forces", default="auto", choices=("auto", "direct", "conservative"))
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' (under torchrun: cuda:LOCAL_RANK)")
    p.add_argument("--batch-size", type=int, default=64, help="structures per block (default 64)")
    p.add_argument("--relax", action="store_true", help="relax each structure; write the relaxed structures")
    p.add_argument("--fmax", type=float, default=0.05, help="relaxation force threshold, eV/A (default 0.05)")
    p.add_argument("--steps", type=int, default=200, help="maximum relaxation steps (default 200)")
    p.add_argument("--cell", action="store_true", help="relax the cell too (needs a conservative model)")
    p.add_argument("--optimizer", default="FIRE", help="ASE optimizer of --relax (default FIRE)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT (and discard its parts)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)  # testing: quit after N blocks
    return p


# ---------------------------------------------------------------------------------------------------- reading
def _frames(inputs):
    """(global index, "file:frame", Atoms) for every structure of ``inputs``, lazily."""
    import ase.io

    index = 0
    for path in inputs:
        j = 0
        try:
            for atoms in ase.io.iread(path, index=":"):
                yield index, f"{path}:{j}", atoms
                index += 1
                j += 1
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001 (ase raises anything on a malformed file)
            raise InputError(f"{path}: cannot read structure {j} ({type(e).__name__}: {e})") from None


def _blocks(inputs, size: int):
    """(block index, [(index, source, Atoms), ...]) in blocks of ``size`` consecutive structures."""
    block = []
    for item in _frames(inputs):
        block.append(item)
        if len(block) == size:
            yield item[0] // size, block
            block = []
    if block:
        yield block[0][0] // size, block


def _count(inputs) -> int | None:
    """Number of structures when cheap to know (xyz/extxyz files: frame headers only), else None."""
    from ase.io.formats import filetype

    total = 0
    for path in inputs:
        try:
            if filetype(path, read=True) not in ("extxyz", "xyz"):
                return None
            with open(path) as f:
                while line := f.readline():
                    if not line.strip():
                        continue
                    n = int(line)
                    for _ in range(n + 1):
                        f.readline()
                    total += 1
        except (OSError, ValueError):
            return None
    return total


# ---------------------------------------------------------------------------------------------------- evaluating
def _error(index: int, source: str, why: str) -> dict:
    return {"index": index, "source": source, "error": why}


def _frame(atoms, index: int, result: dict, extra_info: dict | None = None):
    from ase.calculators.singlepoint import SinglePointCalculator

    out = atoms.copy()  # keeps the input's arrays and info, drops its calculator
    out.info["input_index"] = index
    out.info.update(extra_info or {})
    out.calc = SinglePointCalculator(out, **{k: result[k] for k in ("energy", "forces", "stress") if k in result})
    return out


def _predict_block(calc, block) -> tuple[list, list[dict]]:
    """Frames and sidecar records of one block: ``predict_many(on_error="skip")`` isolates each failure."""
    results = calc.predict_many([a for _, _, a in block], batch_size=len(block), progress=False, on_error="skip")
    frames, errors = [], []
    for (i, source, a), r in zip(block, results):
        if "error" in r:
            errors.append(_error(i, source, r["error"]))
        else:
            frames.append(_frame(a, i, r))
    return frames, errors


def _relax_block(calc, block, opts: Options) -> tuple[list, list[dict]]:
    """Relaxed frames and sidecar records of one block: ``relax_many(on_error="skip")``, in lock-step; a structure
    that is or becomes invalid stops there and the others go on."""
    from .simulate import relax_many

    copies = [a.copy() for _, _, a in block]
    done = relax_many(copies, calc, fmax=opts.fmax, steps=opts.steps, cell=opts.cell, optimizer=opts.optimizer,
                      progress=False, on_error="skip")
    frames, errors = [], []
    for (i, source, _), relaxed, info in zip(block, copies, done):
        if "error" in info:
            errors.append(_error(i, source, info["error"]))
            continue
        result = {k: v for k, v in relaxed.calc.results.items() if k in ("energy", "forces", "stress")}
        frames.append(_frame(relaxed, i, result, {"relax_converged": bool(info["converged"]),
                                                 "relax_steps": int(info["steps"])}))
    return frames, errors


# ---------------------------------------------------------------------------------------------------- writing
def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, write) -> None:
    """``write(file)`` into ``path.tmp``, fsync, rename to ``path``: ``path`` is complete or absent."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _write_part(parts: Path, b: int, frames: list, errors: list[dict]) -> None:
    import ase.io

    # errors first: a block counts as done once its extxyz part exists, and then its errors exist too
    _write_atomic(parts / f"b{b:09d}.errors.jsonl", lambda f: f.writelines(json.dumps(e) + "\n" for e in errors))
    _write_atomic(parts / f"b{b:09d}.extxyz", lambda f: ase.io.write(f, frames, format="extxyz") if frames else None)


def _merge(parts: Path, n_blocks: int, out: Path, errors_out: Path) -> None:
    missing = [b for b in range(n_blocks) if not (parts / f"b{b:09d}.extxyz").is_file()]
    if missing:
        raise RuntimeError(f"{parts}: blocks {missing[:5]} are missing after every rank finished")

    def join(suffix):
        def write(f):
            for b in range(n_blocks):
                with open(parts / f"b{b:09d}{suffix}") as part:
                    shutil.copyfileobj(part, f)
        return write

    _write_atomic(errors_out, join(".errors.jsonl"))
    _write_atomic(out, join(".extxyz"))
    shutil.rmtree(parts)


def _prepare(out: Path, parts: Path, opts: Options, overwrite: bool) -> str | None:
    """Create or check ``parts`` (rank 0); returns a problem to report, or None."""
    meta = dataclasses.asdict(opts)
    if overwrite:
        shutil.rmtree(parts, ignore_errors=True)
        out.unlink(missing_ok=True)
    if out.exists() and not parts.exists():
        return f"{out} exists (a finished run?); pass --overwrite to replace it"
    if parts.exists():
        try:
            old = json.loads((parts / "meta.json").read_text())
        except (OSError, ValueError):
            return f"{parts} exists but has no readable meta.json; remove it or pass --overwrite"
        old["inputs"] = tuple(old.get("inputs", ()))
        if old != meta:
            diff = ", ".join(f"{k}: {old.get(k)!r} -> {v!r}" for k, v in meta.items() if old.get(k) != v)
            return f"{parts} holds a run with other options ({diff}); rerun with the same ones or pass --overwrite"
        return None
    parts.mkdir(parents=True)
    _write_atomic(parts / "meta.json", lambda f: json.dump({**meta, "inputs": list(opts.inputs)}, f))
    return None


# ---------------------------------------------------------------------------------------------------- distributed
@dataclasses.dataclass
class _World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    def barrier(self) -> None:
        if self.size > 1:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, obj):
        """rank 0's ``obj`` on every rank."""
        if self.size == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def _init_world(device: str) -> tuple[_World, str]:
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return _World(), device
    import torch
    import torch.distributed as dist

    world = _World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    gpu = torch.cuda.is_available() and device in ("auto", "cuda")
    if gpu:
        device = f"cuda:{world.local_rank}"
        torch.cuda.set_device(world.local_rank)
    elif device == "auto":
        device = "cpu"
    dist.init_process_group(backend="nccl" if gpu else "gloo")
    return world, device


# ---------------------------------------------------------------------------------------------------- main
def run(inputs, output, *, device: str = "auto", overwrite: bool = False, progress: bool = True,
        stop_after: int | None = None, **options) -> int:
    """The CLI as a function; returns the number of structures written (by this process's run). Options as
    :class:`Options`."""
    opts = Options(inputs=tuple(str(Path(p).resolve()) for p in inputs), **options)
    if opts.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {opts.batch_size}")
    for p in opts.inputs:
        if not Path(p).is_file():
            raise InputError(f"{p}: no such file")
    out = Path(output)
    parts = out.with_name(out.name + ".parts")
    errors_out = out.with_name(out.name + ".errors.jsonl")
    world, device = _init_world(device)
    try:
        problem = world.broadcast(_prepare(out, parts, opts, overwrite) if world.rank == 0 else None)
        if problem:
            raise InputError(problem)
        world.barrier()

        from tqdm import tqdm

        from .calculator import JMPCalculator

        calc = JMPCalculator(opts.model, head=opts.head, forces=opts.forces, dtype=opts.dtype, device=device)
        total = _count(opts.inputs) if progress and world.rank == 0 else None
        if total is not None and world.size > 1:  # rank 0's own blocks
            total = sum(min(opts.batch_size, total - b * opts.batch_size)
                        for b in range(0, math.ceil(total / opts.batch_size), world.size))
        desc = "predict" if world.size == 1 else f"predict (rank 0 of {world.size})"
        bar = tqdm(total=total, desc=desc, unit="struct", disable=not progress or world.rank != 0)
        written, failed, blocks_done, n_structures = 0, 0, 0, 0
        for b, block in _blocks(opts.inputs, opts.batch_size):
            n_structures = block[-1][0] + 1
            if b % world.size != world.rank or (parts / f"b{b:09d}.extxyz").is_file():
                if b % world.size == world.rank:
                    bar.update(len(block))
                continue
            if stop_after is not None and blocks_done >= stop_after:
                return written
            frames, errors = _relax_block(calc, block, opts) if opts.relax else _predict_block(calc, block)
            _write_part(parts, b, frames, errors)
            written, failed, blocks_done = written + len(frames), failed + len(errors), blocks_done + 1
            bar.update(len(block))
        bar.close()
        who = "" if world.size == 1 else f"rank {world.rank} of {world.size}: "
        print(f"jmp_calc.predict: {who}{blocks_done} block(s) evaluated, {written} structure(s) written, {failed} "
              "failed", file=sys.stderr)
        world.barrier()
        if world.rank == 0:
            _merge(parts, math.ceil(n_structures / opts.batch_size), out, errors_out)
            print(f"jmp_calc.predict: {n_structures} structure(s) -> {out} (failures: {errors_out})", file=sys.stderr)
        world.barrier()
        return written
    finally:
        if world.size > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(Options) if f.name != "inputs"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("once")  # one line per kind of warning, not one per structure
            run(args.inputs, args.output, device=args.device, overwrite=args.overwrite,
                progress=not args.no_progress, stop_after=args.stop_after, **options)
    except InputError as e:  # bad options or files: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
