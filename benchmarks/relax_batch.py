"""``relax_many`` (all structures in lock-step, one batched model call per optimizer step) vs one-by-one ASE
relaxations with the same optimizer and calculator, timed side by side in one run, on 100 small structures:
rattled 4-atom fcc cells of six metals (periodic), or with ``--kind molecules`` rattled small molecules (g2,
H/C/N/O; for a molecular model: the embedded model, fitted to metals and adsorbates, collapses some of them, and
relax_many then stops at the first structure with coincident atoms). The two must follow the same trajectories;
the largest final position difference is printed.

    python benchmarks/relax_batch.py [--n 100] [--kind bulk] [--fmax 0.05] [--steps 200] [--threads 2]

(``examples/batch_relax.py`` does the same on 24 adsorbate/slab structures and plots energies against EMT.)
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def structures(kind: str, n: int):
    from ase.build import bulk, molecule
    from ase.collections import g2

    out = []
    if kind == "bulk":
        metals = ["Cu", "Ag", "Au", "Ni", "Pd", "Pt"]
        for i in range(n):
            a = bulk(metals[i % len(metals)], "fcc", cubic=True)
            a.rattle(0.05, seed=i)
            out.append(a)
    else:
        names = [m for m in g2.names if 3 <= len(g2[m]) <= 8 and set(g2[m].numbers) <= {1, 6, 7, 8}]
        for i in range(n):
            a = molecule(names[i % len(names)])
            a.rattle(0.05, seed=i)
            out.append(a)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="jmp-mini-emt",
                    help="registry name or path (default: jmp-mini-emt, the model the committed results "
                         "were measured with)")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--kind", nargs="+", default=["bulk"], choices=["bulk", "molecules"])
    ap.add_argument("--fmax", type=float, default=0.05)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from ase.optimize import FIRE

    from jmp_calc import JMPCalculator
    from jmp_calc.simulate import relax_many

    calc = JMPCalculator(args.model)
    print(f"embedded model, {args.threads} threads; FIRE, fmax {args.fmax} eV/A, at most {args.steps} steps")
    for kind in args.kind:
        structs = structures(kind, args.n)
        calc.predict_many(structs[:8])  # warm-up
        batched = [s.copy() for s in structs]
        t0 = time.perf_counter()
        info = relax_many(batched, calc, fmax=args.fmax, optimizer="FIRE", steps=args.steps, progress=False)
        t_batch = time.perf_counter() - t0
        singles, n_steps = [s.copy() for s in structs], []
        t0 = time.perf_counter()
        for s in singles:
            s.calc = calc
            opt = FIRE(s, logfile=None)
            opt.run(fmax=args.fmax, steps=args.steps)
            n_steps.append(opt.nsteps)
        t_single = time.perf_counter() - t0
        steps = [i["steps"] for i in info]
        dx = max(float(np.abs(a.positions - b.positions).max()) for a, b in zip(batched, singles))
        sizes = [len(s) for s in structs]
        print(f"{args.n} {kind} ({min(sizes)}-{max(sizes)} atoms): relax_many {t_batch:.1f} s "
              f"({max(steps) + 1} batched calls), one by one {t_single:.1f} s ({sum(n_steps) + len(n_steps)} calls) "
              f"-> {t_single / t_batch:.2f}x; converged {sum(i['converged'] for i in info)}/{args.n}, "
              f"{np.mean(steps):.0f} FIRE steps on average (max {max(steps)}); same steps "
              f"{sum(a == b for a, b in zip(steps, n_steps))}/{args.n}, largest final position difference {dx:.1e} A",
              flush=True)


if __name__ == "__main__":
    main()
