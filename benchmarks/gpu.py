"""GPU throughput in one short run (< 5 minutes): batched energy + forces atoms/s of a JMP-S-size model (random
weights, OC20 head, direct forces) and of the default model (``JMPCalculator()``'s, conservative forces), batch
sizes 1-64 of rattled 32-atom fcc Cu cells, float32 and bf16 autocast, peak GPU memory, and a correctness check
of the GPU results against the CPU.

    .venv/bin/python benchmarks/gpu.py [--batches 1 4 16 64] [--budget 240] [--out benchmarks/results/gpu.txt]

On a machine without CUDA it prints why and exits with status 0 (nothing to measure); the test suite never needs a
GPU. Graphs are built once per batch size (CPU work, not timed); each timing is the median of ``--reps`` calls of
``Potential.predict_tensors`` after a warm-up call, with ``torch.cuda.synchronize()`` around it. Sizes that would
run past each model's share of ``--budget`` seconds are skipped and say so.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cu_cells(n: int, seed: int = 0):
    from ase.build import bulk

    cells = []
    for i in range(n):
        a = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
        a.rattle(0.05, seed=seed + i)
        cells.append(a)
    return cells


def models():
    """(label, model, head, forces) of the two models measured."""
    import torch

    from jmp_calc.config import jmp_s
    from jmp_calc.io import load_model
    from jmp_calc.model import build_pretraining_model

    torch.manual_seed(0)
    big = build_pretraining_model(jmp_s())
    small = load_model(None)
    return [("JMP-S size (random), direct", big, "oc20", "direct"),
            ("default model, conservative", small, None, "conservative")]


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--budget", type=float, default=240.0, help="seconds; larger sizes are skipped after it")
    ap.add_argument("--out", help="also write the report to this file")
    ap.add_argument("--cpu-dry-run", action="store_true",
                    help="run the same code on the CPU (a check of this script without a GPU; not a measurement)")
    args = ap.parse_args(argv)

    import torch

    dev = "cpu" if args.cpu_dry_run else "cuda"
    if dev == "cuda" and not torch.cuda.is_available():
        print(f"benchmarks/gpu.py: no CUDA device (torch {torch.__version__}, "
              f"CUDA build: {torch.version.cuda or 'none'}); nothing to measure, exiting.")
        return 0

    import warnings

    from jmp_calc.potential import Potential

    # rattled fcc cells: near-ties at the 30th neighbour of the OC20 head warn; irrelevant for a timing
    warnings.filterwarnings("ignore", message=".*tie at the max_neighbors cut")
    cuda = dev == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    t_start = time.perf_counter()
    name = torch.cuda.get_device_name(0) if cuda else "CPU DRY RUN (not a GPU measurement)"
    lines = [f"torch {torch.__version__}, {name}, CUDA {torch.version.cuda}; "
             f"rattled 32-atom fcc Cu cells; median of {args.reps} after a warm-up"]
    print(lines[0])

    def timed(pot, g, settings, autocast: bool):
        def call():
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=autocast):
                return pot.predict_tensors(g, ("energy", "forces"), head=settings)

        out = call()
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        ts = []
        for _ in range(args.reps):
            sync()
            t0 = time.perf_counter()
            out = call()
            sync()
            ts.append(time.perf_counter() - t0)
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
        return statistics.median(ts), peak, out

    measured = models()
    for k, (label, model, head, forces) in enumerate(measured):
        # each model gets its share of the budget: the larger one must not starve the other
        t_model_end = t_start + args.budget * (k + 1) / len(measured)
        gpu = Potential(model, head=head, forces=forces, device=dev)
        cpu = Potential(model, head=head, forces=forces, device="cpu")
        # correctness: a batch of 4 on the GPU vs the CPU (float32 both), and bf16 autocast vs float32 on the GPU
        cells = cu_cells(4, seed=100)
        settings = gpu.batch_head(cells)
        ref = cpu.predict_tensors(cpu.batch(cells), ("energy", "forces"), head=cpu.batch_head(cells))
        g = gpu.batch(cells)
        _, _, out32 = timed(gpu, g, settings, False)
        e32, f32 = out32["energy"].cpu(), out32["forces"].cpu()
        msg = (f"\n{label}: GPU fp32 vs CPU fp32 relative error energy {rel_err(e32, ref['energy']):.1e}"
               f", forces {rel_err(f32, ref['forces']):.1e}")
        try:
            _, _, out16 = timed(gpu, g, settings, True)
            msg += (f"; bf16 autocast vs fp32: energy {rel_err(out16['energy'].float().cpu(), e32):.1e}"
                    f", forces {rel_err(out16['forces'].float().cpu(), f32):.1e}")
            bf16_ok = True
        except Exception as exc:  # noqa: BLE001 - reported, the fp32 rows still run
            msg += f"; bf16 autocast failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            bf16_ok = False
        print(msg)
        lines.append(msg)
        head_line = f"  {'batch':>5s} {'atoms':>6s} {'edges':>8s}  {'fp32 atoms/s':>12s} {'peak MB':>8s}  " \
                    f"{'bf16 atoms/s':>12s} {'peak MB':>8s}"
        print(head_line)
        lines.append(head_line)
        for b in args.batches:
            if time.perf_counter() > t_model_end:
                row = f"  {b:5d} skipped: past this model's share of the {args.budget:.0f} s budget"
                print(row)
                lines.append(row)
                continue
            cells = cu_cells(b)
            g = gpu.batch(cells)
            settings = gpu.batch_head(cells)
            n = g.pos.shape[0]
            row = f"  {b:5d} {n:6d} {g.main.num_edges:8d}"
            for autocast in (False, True):
                if autocast and not bf16_ok:
                    row += f"  {'-':>12s} {'-':>8s}"
                    continue
                try:
                    t, peak, _ = timed(gpu, g, settings, autocast)
                    row += f"  {n / t:12.0f} {peak:8.0f}"
                except torch.cuda.OutOfMemoryError:
                    if cuda:
                        torch.cuda.empty_cache()
                    row += f"  {'OOM':>12s} {'':>8s}"
            print(row)
            lines.append(row)
        del gpu, cpu
        if cuda:
            torch.cuda.empty_cache()
    tail = f"total {time.perf_counter() - t_start:.0f} s"
    print(tail)
    lines.append(tail)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
