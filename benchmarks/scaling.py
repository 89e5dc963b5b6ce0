"""Time and peak memory per atom of one energy+forces call of the embedded model on bulk Cu supercells (rattled),
from 108 to 10,976 atoms: linear scaling means flat columns.

Every size runs in a fresh subprocess, so its peak resident memory (``ru_maxrss``, which also sees torch's own
allocator; ``tracemalloc`` does not) is that size's alone; a 4-atom run of the same script is the baseline (Python,
torch and the model) that the per-atom memory is counted above. Calls are timed after one warm-up call (sizes up to
1,500 atoms: median of 3; larger: one call); user and system CPU time per call are printed too (system time is
mostly the kernel zero-filling the pages of large tensors, which glibc maps afresh for every block over 32 MB).

    python benchmarks/scaling.py [--max-atoms 11000] [--threads 2] [--model NAME_OR_PATH] [--stress]
                                 [--repeats 3 5 ...] [--tree PATH]

``--stress``: energy + forces + stress (the strain derivative too); ``--repeats``: only these supercells (n x n x n
cubic cells, 4 n^3 atoms); ``--tree``: import jmp_calc from another checkout (a ``git worktree`` of an older
commit) for before/after runs. Children inherit the environment: ``MALLOC_MMAP_THRESHOLD_=65536`` makes glibc
return freed blocks, so that the peak is the call's and not the heap's history. Sizes above 1,500 atoms are
timed on their first call (no warm-up call: minutes each, and the first-call overheads are negligible there).
"marginal" is the extra peak per extra atom since the previous size: "kB/atom" also counts the fixed costs that
the 4-atom baseline lacks (e.g. the ~85 MB that stay resident after the first 108- or 500-atom call, most of it
glibc heap, with the code before and after the memory work of 2026-12-02: ~800 kB/atom at 108 atoms, ~8 at 10,976).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

REPEATS = (3, 5, 7, 10, 14)  # cubic 4-atom Cu cells: 108, 500, 1372, 4000, 10976 atoms


def one(n: int, threads: int, model, stress: bool = False, tree: str | None = None) -> dict:
    """Runs in the child: build, warm up, time; returns the measurements."""
    if tree:
        sys.path.insert(0, tree)
    import torch

    torch.set_num_threads(threads)
    from _timing import median_time  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
    from ase.build import bulk

    from jmp_calc import JMPCalculator

    pot = JMPCalculator(model).potential
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((n, n, n))
    atoms.rattle(0.02, seed=0)  # off the k-NN ties of the perfect crystal
    props = ("energy", "forces", "stress") if stress else ("energy", "forces")
    reps = 3 if len(atoms) <= 1500 else 1
    if reps > 1:
        pot.predict([atoms], properties=props)  # warm-up
    else:
        pot.predict([bulk("Cu", "fcc", a=3.61, cubic=True)], properties=props)  # warm-up of the code paths only

    def call():
        pot._graph_cache = None  # graph building is part of every call (a new structure each time in practice)
        pot.predict([atoms], properties=props)

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t = median_time(call, reps)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    g = pot.batch([atoms])
    return {"atoms": len(atoms), "s": t, "peak_mb": r1.ru_maxrss / 1024, "user_s": (r1.ru_utime - r0.ru_utime) / reps,
            "sys_s": (r1.ru_stime - r0.ru_stime) / reps, "edges": g.main.num_edges,
            "quadruplets": g.quad.num_quadruplets}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="jmp-mini-emt",
                    help="registry name or path (default: jmp-mini-emt, the model the committed results "
                         "were measured with)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-atoms", type=int, default=11000)
    ap.add_argument("--stress", action="store_true", help="energy + forces + stress (default: energy + forces)")
    ap.add_argument("--repeats", type=int, nargs="+", help="supercells to run (default: %s)" % (REPEATS,))
    ap.add_argument("--tree", help="import jmp_calc from this checkout")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child mode: one supercell size
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.one, args.threads, args.model, args.stress, args.tree)))
        return

    def child(n):
        cmd = [sys.executable, __file__, "--one", str(n), "--threads", str(args.threads)]
        if args.model:
            cmd += ["--model", args.model]
        if args.stress:
            cmd += ["--stress"]
        if args.tree:
            cmd += ["--tree", args.tree]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        return json.loads(out), time.perf_counter() - t0

    base, _ = child(1)  # 4 atoms: interpreter + torch + model + a tiny call
    props = "energy + forces + stress" if args.stress else "energy + forces"
    print(f"model {args.model}, {props}, {args.threads} threads, jmp_calc from {args.tree or 'this tree'}, "
          f"MALLOC_MMAP_THRESHOLD_={os.environ.get('MALLOC_MMAP_THRESHOLD_', 'unset')}; baseline (4-atom run): "
          f"peak RSS {base['peak_mb']:.0f} MB")
    print(f"{'atoms':>7} {'edges':>9} {'quads':>10} {'call (s)':>9} {'us/atom':>8} {'user us/atom':>13} "
          f"{'sys us/atom':>12} {'peak MB':>8} {'above base':>11} {'kB/atom':>8} {'marginal':>9}")
    rows = []
    for r in args.repeats or REPEATS:
        n = 4 * r**3
        if n > args.max_atoms:
            break
        avail = _available_mb()
        if rows and avail is not None and base["peak_mb"] + rows[-1]["extra"] / rows[-1]["atoms"] * n > 0.9 * avail:
            need = base["peak_mb"] + rows[-1]["extra"] / rows[-1]["atoms"] * n
            print(f"{n:>7} skipped: needs ~{need / 1024:.1f} GB at the measured memory per atom, "
                  f"{avail / 1024:.1f} GB available")
            break
        m, wall = child(r)
        extra = m["peak_mb"] - base["peak_mb"]
        row = dict(m, us_atom=1e6 * m["s"] / m["atoms"], kb_atom=1024 * extra / m["atoms"], extra=extra)
        # marginal: the extra peak per extra atom since the previous size (what a fixed cost does not blur)
        marginal = (f"{1024 * (extra - rows[-1]['extra']) / (m['atoms'] - rows[-1]['atoms']):>9.1f}" if rows
                    else f"{'':>9}")
        rows.append(row)
        print(f"{m['atoms']:>7} {m['edges']:>9} {m['quadruplets']:>10} {m['s']:>9.2f} {row['us_atom']:>8.0f} "
              f"{1e6 * m['user_s'] / m['atoms']:>13.0f} {1e6 * m['sys_s'] / m['atoms']:>12.0f} {m['peak_mb']:>8.0f} "
              f"{extra:>11.0f} {row['kb_atom']:>8.1f} {marginal}   ({wall:.0f} s incl. start-up)", flush=True)
    if len(rows) >= 2:
        lo, hi = rows[0], rows[-1]
        cpu = (hi["user_s"] / hi["atoms"]) / (lo["user_s"] / lo["atoms"])
        print(f"largest / smallest ({hi['atoms']} / {lo['atoms']} atoms), 1.00x = linear scaling: wall time per atom "
              f"{hi['us_atom'] / lo['us_atom']:.2f}x, user CPU time per atom {cpu:.2f}x, memory per atom (above "
              f"baseline) {hi['kb_atom'] / lo['kb_atom']:.2f}x")


def _available_mb() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            info = {line.split(":")[0]: line.split()[1] for line in fh}
        return int(info["MemAvailable"]) / 1024
    except (OSError, KeyError, ValueError):  # not Linux: no guard
        return None


if __name__ == "__main__":
    main()
