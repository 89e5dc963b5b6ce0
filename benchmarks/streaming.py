"""Peak memory of predictions over many small structures: ``calc.iter_predict`` over a generator (structures made
on the fly, results consumed as they come) for 1,000 vs 10,000 structures, side by side with ``calc.predict_many``
over a list of the same structures (inputs and results all held). Streaming memory must not grow with the number of
structures; the list's grows linearly.

Every run is a fresh subprocess; peak resident memory is its ``ru_maxrss`` (it sees torch's allocator too), and
"above start" subtracts the peak after loading the model and one warm-up batch. The children run with
``MALLOC_MMAP_THRESHOLD_=65536``: glibc's default moves its mmap threshold up as large blocks are freed, after which
the freed tensors of one batch stay in a fragmented heap and the peak creeps up over the first thousands of
structures (by ~70-200 MB here, then levels off) without any Python object being kept; ``--default-malloc`` shows it.

    python benchmarks/streaming.py [--sizes 1000 10000] [--modes stream list] [--threads 2] [--default-malloc]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def molecules(n: int):
    """``n`` rattled copies of four small molecules in turn (18 atoms per round), made one at a time: every batch
    holds about the same atoms, edges and quadruplets, so a growing peak would be a leak, not a bigger batch."""
    from ase.build import molecule

    names = ["CH4", "H2O", "NH3", "CH3OH"]
    for i in range(n):
        a = molecule(names[i % len(names)])
        a.rattle(0.02, seed=i)
        yield a


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(n: int, mode: str, threads: int, model) -> dict:
    """Runs in the child."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from jmp_calc import JMPCalculator

    calc = JMPCalculator(model)
    calc.predict_many(list(molecules(64)))  # warm-up: model, allocator pools, one full batch
    start = _peak_mb()
    t0 = time.perf_counter()
    if mode == "stream":
        count, e_sum, f_max = 0, 0.0, 0.0
        for r in calc.iter_predict(molecules(n)):
            count += 1
            e_sum += r["energy"]
            f_max = max(f_max, float(np.abs(r["forces"]).max()))
    else:
        results = calc.predict_many(list(molecules(n)))
        count = len(results)
    return {"n": count, "s": time.perf_counter() - t0, "start_mb": start, "peak_mb": _peak_mb()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="jmp-mini-emt",
                    help="registry name or path (default: jmp-mini-emt, the model the committed results "
                         "were measured with)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--modes", nargs="+", default=["stream", "list"], choices=["stream", "list"])
    ap.add_argument("--default-malloc", action="store_true", help="leave glibc's dynamic mmap threshold on")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child mode
    ap.add_argument("--mode", default="stream", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.one, args.mode, args.threads, args.model)))
        return

    def child(n, mode):
        cmd = [sys.executable, __file__, "--one", str(n), "--mode", mode, "--threads", str(args.threads)]
        if args.model:
            cmd += ["--model", args.model]
        env = dict(os.environ) if args.default_malloc else dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout.strip().splitlines()[-1]
        return json.loads(out)

    print(f"embedded model, {args.threads} threads; small molecules (CH4, H2O, NH3, CH3OH in turn, rattled); "
          f"{'default glibc malloc' if args.default_malloc else 'MALLOC_MMAP_THRESHOLD_=65536'}")
    print(f"{'structures':>10} {'mode':>22} {'time (s)':>9} {'struct/s':>9} {'peak MB':>9} {'above start':>12}")
    peaks = {}
    labels = {"stream": "iter_predict(generator)", "list": "predict_many(list)"}
    for mode in args.modes:
        label = labels[mode]
        for n in args.sizes:
            m = child(n, mode)
            peaks[mode, n] = m["peak_mb"] - m["start_mb"]
            print(f"{m['n']:>10} {label:>22} {m['s']:>9.1f} {m['n'] / m['s']:>9.0f} {m['peak_mb']:>9.0f} "
                  f"{peaks[mode, n]:>12.0f}", flush=True)
    lo, hi = min(args.sizes), max(args.sizes)
    if lo != hi:
        for mode in args.modes:
            label = {"stream": "streamed", "list": "listed"}[mode]
            grow = peaks[mode, hi] - peaks[mode, lo]
            print(f"{label}: peak above start {peaks[mode, lo]:.0f} MB for {lo:,} -> {peaks[mode, hi]:.0f} MB for "
                  f"{hi:,} structures ({grow:+.0f} MB, {1024 * grow / (hi - lo):+.1f} kB per extra structure)")


if __name__ == "__main__":
    main()
