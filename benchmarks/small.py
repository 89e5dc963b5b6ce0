"""Small systems with the default model (``JMPCalculator()``): a rattled 32-atom fcc Cu cell (energy + forces +
stress) and ethanol (energy + forces), one thread. Prints per call: graph building (``Potential.batch``), model
(``Potential.predict_tensors``: forward + backward) and the end-to-end ASE call (``get_potential_energy``,
``get_forces``[, ``get_stress``] on a moved copy, so every call rebuilds the graph).

    .venv/bin/python benchmarks/small.py [--reps 20] [--threads 1] [--tree PATH]
    .venv/bin/python benchmarks/small.py --compile [--rounds 2] [--md-steps 20]
    .venv/bin/python benchmarks/small.py --malloc-ab 3   # glibc default vs jmp_calc.allocator, alternated

Medians of ``--reps`` calls after 3 warm-ups, as thread CPU time (``time.thread_time``: what the call costs,
robust to other processes on a shared machine) and as wall time (min: the unloaded latency). ``--tree`` imports
``jmp_calc`` from another checkout (e.g. a ``git worktree`` of an older commit) to compare versions side by side:
run both in alternation and compare the medians.

``--compile``: the same calls with ``JMPCalculator(compile=True)`` (:mod:`jmp_calc.compile`) next to the eager
calculator in one process: the warm-up (wall time of the first call of each structure kind, compilation
included), the largest relative deviation from eager (energy, forces, stress: max |compiled - eager| / max
|eager| over a few moved states), model and ASE-call medians alternated ``--rounds`` times and their ratio, and
an NVE run of ``--md-steps`` steps of the Cu cell counting Dynamo's compiled graphs against the distinct
(edge, triplet, quadruplet) counts the run visited (one graph for all of them = no recompilation). Set
``TORCHINDUCTOR_CACHE_DIR`` to a fresh directory for a cold-cache warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

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


def _graph_count() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _deviation(eager, compiled, atoms, props, states: int = 3) -> dict[str, float]:
    """max |compiled - eager| / max |eager| per property over ``states`` moved copies of ``atoms``."""
    worst = dict.fromkeys(props, 0.0)
    for k in range(states):
        a = atoms.copy()
        a.positions += np.random.default_rng(10 + k).normal(0, 0.02, a.positions.shape)
        (re,) = eager.potential.predict([a], properties=props)
        (rc,) = compiled.potential.predict([a], properties=props)
        for p in props:
            x, y = np.asarray(rc[p]), np.asarray(re[p])
            worst[p] = max(worst[p], float(np.abs(x - y).max() / max(np.abs(y).max(), 1e-30)))
    return worst


def _md_recompiles(calc, atoms, steps: int) -> str:
    """NVE steps of ``atoms`` with ``calc``: Dynamo graphs compiled during the run vs distinct graph sizes."""
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    a = atoms.copy()
    a.calc = calc
    MaxwellBoltzmannDistribution(a, temperature_K=600, rng=np.random.default_rng(0))
    sizes, before = set(), _graph_count()
    pot = calc.potential

    def note():
        g = pot._graph_cache[2]
        sizes.add((g.main.num_edges, g.a2a.num_edges, int(g.trip_e2e.inp.shape[0]), g.quad.num_quadruplets))

    dyn = VelocityVerlet(a, 2 * units.fs)
    dyn.attach(note, interval=1)
    dyn.run(steps)
    return (f"{steps} NVE steps (600 K, 2 fs): {len(sizes)} distinct (main, a2a, triplet, quadruplet) counts, "
            f"{_graph_count() - before} graph(s) compiled during the run")


def compare_compiled(args, calc, structures) -> None:
    import time

    from jmp_calc import JMPCalculator

    comp = JMPCalculator(compile=True)
    print(f"\ncompiled (torch.compile, inductor, dynamic shapes) vs eager, {args.threads} thread(s); warm-up = wall "
          "time of the first compiled call (compilation included)")
    rows = []
    for name, atoms, props in structures:
        a = atoms.copy()
        a.positions[0, 0] += 1e-3
        a.calc = comp
        graphs, t0 = _graph_count(), time.perf_counter()
        a.get_potential_energy()
        warm = time.perf_counter() - t0
        dev = _deviation(calc, comp, atoms, props)
        print(f"{name:22s} warm-up {warm:6.1f} s ({_graph_count() - graphs} graph(s)); largest relative deviation "
              "from eager: " + ", ".join(f"{p} {v:.1e}" for p, v in dev.items()), flush=True)
        rows.append((name, atoms, props))
    print(f"{'structure':22s} {'':9s} {'model (cpu/wall ms)':>20s} {'ASE call (cpu/wall ms)':>23s}")
    for name, atoms, props in rows:
        res = {"eager": [], "compiled": []}
        for _ in range(args.rounds):  # alternated: eager, compiled, eager, compiled, ...
            for label, c in (("eager", calc), ("compiled", comp)):
                _, model, ase_call = calls(c, atoms, props)
                res[label].append((measure(model, args.reps), measure(ase_call, args.reps)))
        for label, r in res.items():
            cols = "  ".join(f"{min(x[i][0] for x in r):6.1f} / {min(x[i][1] for x in r):5.1f}" for i in (0, 1))
            print(f"{name:22s} {label:9s} {cols}")
        ratio = [min(x[i][0] for x in res["eager"]) / min(x[i][0] for x in res["compiled"]) for i in (0, 1)]
        print(f"{name:22s} {'ratio':9s} model {ratio[0]:.2f}x, ASE call {ratio[1]:.2f}x (eager / compiled, thread-CPU "
              f"medians, best of {args.rounds} rounds)", flush=True)
    if args.md_steps:
        name, atoms, _ = rows[0]
        print(f"{name}: {_md_recompiles(comp, atoms, args.md_steps)}; compile times so far (s): "
              f"{[round(t, 1) for t in comp.potential.compiled.compile_times]}")


def malloc_ab(args) -> int:
    """Alternate fresh processes with glibc's default malloc and jmp_calc's settings; ratio of the medians."""
    import os
    import subprocess

    rows: dict[str, dict[str, list[float]]] = {"default": {}, "tuned": {}}
    for r in range(args.malloc_ab):
        for mode in ("default", "tuned"):
            cmd = [sys.executable, __file__, "--reps", str(args.reps), "--threads", str(args.threads), "--tree",
                   args.tree, "--malloc", mode]
            env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
            print(f"round {r + 1}, malloc {mode}:\n{out}", flush=True)
            for line in out.splitlines():
                if "/" in line and line[:22].strip() and not line.startswith(("jmp_calc", "structure")):
                    name, cells = line[:22].strip(), line[22:].split()
                    # cells: cpu / wall for graph, model, ASE call
                    rows[mode].setdefault(name, []).append([float(cells[i]) for i in (0, 2, 3, 5, 6, 8)])
    print(f"medians over {args.malloc_ab} rounds, default -> tuned malloc (thread-CPU ms; min wall ms)")
    for name in rows["tuned"]:
        d = np.median(np.array(rows["default"][name]), axis=0)
        t = np.median(np.array(rows["tuned"][name]), axis=0)
        cols = [f"{label} {d[i]:.1f} -> {t[i]:.1f} ({d[i] / t[i]:.2f}x)" for i, label in (
            (2, "model cpu"), (3, "model wall"), (4, "ASE cpu"), (5, "ASE wall"))]
        print(f"  {name:22s} " + ", ".join(cols))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tree", default=str(ROOT), help="checkout to import jmp_calc from (default: this one)")
    ap.add_argument("--compile", action="store_true", help="also compare JMPCalculator(compile=True) with eager")
    ap.add_argument("--rounds", type=int, default=2, help="--compile: alternated eager/compiled rounds")
    ap.add_argument("--md-steps", type=int, default=20, help="--compile: NVE steps counting recompilations (0: none)")
    ap.add_argument("--malloc", choices=("tuned", "default"), default="tuned",
                    help="glibc malloc as a CPU Potential sets it (jmp_calc.allocator) or glibc's defaults")
    ap.add_argument("--malloc-ab", type=int, default=0, metavar="ROUNDS",
                    help="run this script ROUNDS times with each --malloc setting, alternated in fresh processes, "
                         "and print the ratio of their medians")
    args = ap.parse_args(argv)
    if args.malloc_ab:
        return malloc_ab(args)
    if args.malloc == "default":
        import os

        os.environ["JMP_CALC_TUNE_MALLOC"] = "0"
    sys.path.insert(0, args.tree)

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
    structures = (("Cu 32 atoms, E+F+S", cu, ("energy", "forces", "stress")),
                  ("ethanol, E+F", eth, ("energy", "forces")))
    for name, atoms, props in structures:
        cols = [measure(f, args.reps) for f in calls(calc, atoms, props)]
        print(f"{name:22s} " + " ".join(f"{c:6.1f} / {w:5.1f}" for c, w in cols), flush=True)
    if args.compile:
        compare_compiled(args, calc, structures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
