"""Which neighbour list? vesin vs matscipy vs ASE on the graphs JMP needs, timed side by side in one run.

Same pairs from all three (checked here); median of --reps calls. jmp_calc uses vesin (jmp_calc/graph/neighbors.py).

    python benchmarks/neighbors.py
"""

from __future__ import annotations

import argparse

import numpy as np
from _timing import median_time  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
from ase.build import bulk, fcc111, molecule


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    from ase.neighborlist import neighbor_list as ase_nl
    from vesin import NeighborList

    try:
        from matscipy.neighbours import neighbour_list as ms_nl
    except ImportError:
        ms_nl = None
    cases = [
        ("aspirin-size molecule (C2H6O), 8 A", molecule("CH3CH2OH"), 8.0),
        ("Pt(111) 4x4x6 slab, 12 A", fcc111("Pt", (4, 4, 6), vacuum=10.0), 12.0),
        ("Cu 1,000 atoms (5x5x10 cubic), 12 A", bulk("Cu", "fcc", a=3.61, cubic=True).repeat((5, 5, 10)), 12.0),
        ("Cu 1 atom primitive cell, 12 A (many images)", bulk("Cu", "fcc", a=3.61), 12.0),
    ]
    print(f"{'structure':48s} {'pairs':>9s} {'vesin':>9s} {'matscipy':>9s} {'ase':>9s}   [ms, median of {args.reps}]")
    for name, atoms, cutoff in cases:
        atoms.rattle(0.01, seed=0)
        nl = NeighborList(cutoff=cutoff, full_list=True)
        box = atoms.cell.array if atoms.pbc.any() else np.zeros((3, 3))
        per = atoms.pbc.tolist() if atoms.pbc.any() else False
        i, j = nl.compute(atoms.positions, box, per, quantities="ij")
        n_pairs = len(i)
        t_v = median_time(lambda: nl.compute(atoms.positions, box, per, quantities="ijSd"), args.reps)
        t_a = median_time(lambda: ase_nl("ijSd", atoms, cutoff), max(1, args.reps // 2))
        assert len(ase_nl("i", atoms, cutoff)) == n_pairs
        if ms_nl is not None and atoms.pbc.any():
            t_m = median_time(lambda: ms_nl("ijSd", atoms, cutoff), args.reps)
            assert len(ms_nl("i", atoms, cutoff)) == n_pairs
        else:
            t_m = float("nan")  # matscipy needs a cell; molecules get one only by padding
        print(f"{name:48s} {n_pairs:9d} {t_v * 1e3:9.2f} {t_m * 1e3:9.2f} {t_a * 1e3:9.2f}")


if __name__ == "__main__":
    main()
