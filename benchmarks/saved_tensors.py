"""Memory kept from forward to backward by conservative energy + forces + stress of the default model (exact, not
timed: independent of machine load): every tensor autograd saves is tallied once (by storage) with the jmp_calc
source line that created it.

    MALLOC_MMAP_THRESHOLD_=65536 .venv/bin/python benchmarks/saved_tensors.py [--repeat 3] [--tree PATH] [--top 15]

Rattled fcc Cu, ``repeat**3`` cubic 4-atom cells (3: 108 atoms). ``--tree`` imports jmp_calc from another checkout
(e.g. a ``git worktree`` of an older commit) to compare versions. Peak memory is this plus what backward allocates
at once; ``scaling.py`` measures the resident peak.
"""

from __future__ import annotations

import argparse
import collections
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tree", default=str(ROOT))
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args(argv)
    sys.path.insert(0, args.tree)

    import torch
    from ase.build import bulk

    from jmp_calc import JMPCalculator
    from jmp_calc.potential import differentiable_geometry

    torch.set_num_threads(1)
    pot = JMPCalculator().potential
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((args.repeat,) * 3)
    atoms.rattle(0.02, seed=0)
    g = pot.batch([atoms])
    head = pot.batch_head([atoms])
    sizes: dict[int, int] = {}
    by_line: collections.Counter = collections.Counter()

    def pack(t):
        key = t.untyped_storage().data_ptr()
        if key not in sizes:
            sizes[key] = t.untyped_storage().nbytes()
            frames = [f for f in traceback.extract_stack()[:-1] if "jmp_calc" in f.filename]
            where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno} {frames[-1].line[:70]}" if frames else "?"
            by_line[where] += sizes[key]
        return t

    rss0 = _rss_mb()
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        pos_leaf, eps, pos, cell = differentiable_geometry(g, positions=True, strain=True)
        out = pot.model(g, heads=[head.index], pos=pos, cell=cell, direct_forces=False)
    held = None if rss0 is None else _rss_mb() - rss0
    total = sum(sizes.values())
    print(f"jmp_calc from {args.tree}: {len(atoms)} atoms, {g.quad.num_quadruplets:,} quadruplets; saved for "
          f"backward {total / 2**20:.1f} MB = {total / 1024 / len(atoms):.0f} kB/atom")
    if held is not None:
        # recomputed regions (activation checkpoints) hold their inputs themselves: the hooks above do not see them
        print(f"resident memory added by the forward pass (everything held for backward, checkpoint inputs "
              f"included): {held:.1f} MB = {held * 1024 / len(atoms):.0f} kB/atom")
    del out
    for where, n in by_line.most_common(args.top):
        print(f"  {n / 2**20:8.2f} MB  {where}")
    return 0


def _rss_mb() -> float | None:
    """Resident set size (Linux; meaningful with MALLOC_MMAP_THRESHOLD_=65536, which returns freed blocks)."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024
    except (OSError, StopIteration):
        return None


if __name__ == "__main__":
    raise SystemExit(main())
