"""Batched vs single predictions, and the share of graph building, side by side in one run.

1. 64 QM9-size molecules (rdkit-free: ASE's g2 set, 3-20 atoms) through ``calc.predict_many`` vs 64 single
   ASE calculator calls (target >= 4x).
2. A 1,000-atom Cu cell: time of graph building (neighbour list + four graphs + index sets) vs the whole
   energy+forces call (target <= 15 %).

    python benchmarks/batching.py [--model NAME_OR_PATH] [--threads 2]
"""

from __future__ import annotations

import argparse

import torch
from _timing import median_time  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="jmp-mini-emt",
                    help="registry name or path (default: jmp-mini-emt, the model the committed results "
                         "were measured with)")
    ap.add_argument("--head", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from ase.build import bulk, molecule
    from ase.collections import g2

    from jmp_calc import JMPCalculator

    calc = JMPCalculator(args.model, head=args.head)
    names = [n for n in g2.names if 3 <= len(g2[n]) <= 20 and set(g2[n].numbers) <= {1, 6, 7, 8}]
    mols = [molecule(names[i % len(names)]) for i in range(64)]
    for i, m in enumerate(mols):
        m.rattle(0.02, seed=i)
    calc.predict_many(mols[:4])  # warm-up

    def singles():
        for m in mols:
            calc.calculate(m, ["energy", "forces"])

    t_many = median_time(lambda: calc.predict_many(mols), args.reps)
    t_single = median_time(singles, args.reps)
    print(f"model: {calc.model.card.name or args.model}, {args.threads} threads")
    print(f"64 molecules ({min(len(m) for m in mols)}-{max(len(m) for m in mols)} atoms): predict_many "
          f"{t_many * 1e3:.0f} ms, 64 single calls {t_single * 1e3:.0f} ms -> {t_single / t_many:.1f}x")

    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((5, 5, 10))
    cu.rattle(0.02, seed=0)
    pot = calc.potential
    t_graph = median_time(lambda: pot.batch([cu]), args.reps)
    t_total = median_time(lambda: pot.predict([cu]), args.reps)
    cutoff = pot.settings_for(cu).graph.cutoff
    print(f"{len(cu)}-atom Cu cell ({cutoff} A graph): graph building {t_graph * 1e3:.0f} ms of "
          f"{t_total * 1e3:.0f} ms per energy+forces call = {100 * t_graph / t_total:.0f} %")


if __name__ == "__main__":
    main()
