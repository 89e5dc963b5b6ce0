"""Small systems with the default model (``JMPCalculator()``): a rattled 32-atom fcc Cu cell (energy + forces +
stress) and ethanol (energy + forces), one thread. Prints per call: graph building (``Potential.batch``), model
(``Potential.predict_tensors``: forward + backward) and the end-to-end ASE call (``get_potential_energy``,
``get_forces``[, ``get_stress``] on a moved copy, so every call rebuilds the graph).

    .venv/bin/python benchmarks/small.py [--reps 20] [--threads 1] [--tree PATH]

Medians of ``--reps`` calls after 3 warm-ups, as thread CPU time (``time.thread_time``: what the call costs,
robust to other processes on a shared machine) and as wall time (min: the unloaded latency). ``--tree`` imports
``jmp_calc`` from another checkout (e.g. a ``git worktree`` of an older commit) to compare versions side by side:
run both in alternation and compare the medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(fn, reps: int) -> tuple[float, float]:
    for _ in range(3):
        fn()
    cpu, wall = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.thread_time()
        fn()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(cpu), 1e3 * min(wall)


def calls(calc, atoms, props):
    """Graph building, model, and ASE call of ``atoms`` moved a little more each call (no cached graphs)."""
    pot = calc.potential
    step = [0]

    def moved():
        step[0] += 1
        a = atoms.copy()
        a.positions[0, 0] += 1e-4 * step[0]
        return a

    def graph():
        pot._graph_cache = None
        pot.batch([moved()])

    g = pot.batch([atoms])
    settings = pot.batch_head([atoms])

    def model():
        pot.predict_tensors(g, props, head=settings)

    def ase_call():
        a = moved()
        a.calc = calc
        a.get_potential_energy()
        a.get_forces()
        if "stress" in props:
            a.get_stress()

    return graph, model, ase_call


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tree", default=str(ROOT), help="checkout to import jmp_calc from (default: this one)")
    args = ap.parse_args(argv)
    sys.path.insert(0, args.tree)

    import numpy as np
    import torch
    from ase.build import bulk, molecule

    import jmp_calc
    from jmp_calc import JMPCalculator

    torch.set_num_threads(args.threads)
    calc = JMPCalculator()
    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    cu.positions += np.random.default_rng(0).normal(0, 0.05, cu.positions.shape)
    eth = molecule("CH3CH2OH")
    print(f"jmp_calc from {Path(jmp_calc.__file__).parent.parent}, torch {torch.__version__}, {args.threads} "
          f"thread(s), median thread-CPU ms / min wall ms of {args.reps} calls")
    print(f"{'structure':22s} {'graph':>14s} {'model':>14s} {'ASE call':>14s}")
    for name, atoms, props in (("Cu 32 atoms, E+F+S", cu, ("energy", "forces", "stress")),
                               ("ethanol, E+F", eth, ("energy", "forces"))):
        cols = [measure(f, args.reps) for f in calls(calc, atoms, props)]
        print(f"{name:22s} " + " ".join(f"{c:6.1f} / {w:5.1f}" for c, w in cols))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
