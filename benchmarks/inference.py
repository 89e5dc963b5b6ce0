"""Energy + forces latency of a JMP-S-size GemNet-OC (random weights), ours vs the original JMP code, side by side.

Structures: aspirin (8 A molecular graph, ANI-1x head) and a 98-atom Pt(111) slab with CO (12 A periodic graph,
OC20 head). Both implementations get the same weights (the original model's random init with seeded scale
factors, loaded into ours through our checkpoint loader) and the same structures; measurements are interleaved
(reference, ours, reference, ours, ...) so machine noise hits both alike. Median of --reps runs after a warm-up.

Columns:
  graph      graph construction (neighbour list, four graphs, index sets, batching)
  E+F direct energies and direct forces: the original forward computes all 4 heads (that is all it can do); ours
             is the calculator path (one head), and "ours 4 heads" the same work as the original.
  E+F grad   energy and conservative forces -dE/dx for one head: graph + forward + one backward, both sides.

Usage (side by side, in the reference venv of ../shared/reference, see its README):
    JMP_SRC=/path/to/JMP/src /tmp/jmp-ref/venv/bin/python benchmarks/inference.py
Without JMP_SRC it times our implementation only (any venv with jmp_calc installed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _timing import median_time  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from jmp_calc.config import jmp_s, pretraining_heads  # noqa: E402
from jmp_calc.graph.batch import collate  # noqa: E402
from jmp_calc.graph.structures import as_structure, build_graphs  # noqa: E402
from jmp_calc.io import load_model  # noqa: E402
from jmp_calc.model import build_pretraining_model  # noqa: E402
from jmp_calc.potential import Potential  # noqa: E402


def structures():
    z = np.load(ROOT / "tests" / "data" / "reference_extra.npz")
    aspirin = dict(name="aspirin", numbers=z["aspirin/numbers"], positions=z["aspirin/positions"],
                   cell=np.zeros((3, 3)), pbc=np.zeros(3, bool), tags=np.full(21, 2), task="ani1x")
    from ase.build import add_adsorbate, fcc111, molecule

    slab = fcc111("Pt", size=(4, 4, 6), vacuum=10.0)
    add_adsorbate(slab, molecule("CO"), 1.9, "ontop")
    slab.positions += np.random.default_rng(0).normal(0, 0.02, slab.positions.shape)
    tags = slab.get_tags().copy()
    tags[tags > 2] = 0
    tags[-2:] = 2
    pt = dict(name=f"Pt(111)+CO, {len(slab)} atoms", numbers=slab.numbers, positions=slab.positions,
              cell=np.asarray(np.asarray(slab.cell.array, np.float32), np.float64), pbc=np.ones(3, bool), tags=tags,
              task="oc20")
    return [aspirin, pt]



class Ours:
    def __init__(self, model):
        self.model = model.eval()

    def graph(self, s):
        m = self.model
        head = m.heads[m.head_index(s["task"])]
        st = as_structure(s)
        g = build_graphs(st, head.graph, m.config.qint_tags, head.set_tags_to)
        return collate([g], [st.positions], [st.numbers], [st.cell])

    def direct_one_head(self, s):
        pot = self._pot(s, "direct")
        return pot.predict([s])

    def direct_four_heads(self, s):
        g = self.graph(s)
        with torch.inference_mode():
            return self.model(g)

    def grad_one_head(self, s):
        return self._pot(s, "conservative").predict([s])

    def _pot(self, s, forces):
        key = (s["task"], forces)
        if not hasattr(self, "_pots"):
            self._pots = {}
        if key not in self._pots:
            self._pots[key] = Potential(self.model, head=s["task"], forces=forces, device="cpu")
        return self._pots[key]


class Reference:
    def __init__(self, jmpref, model):
        self.jmpref, self.model = jmpref, model

    def graph(self, s):
        return self.jmpref.prepare_batch(self.model, [s], [s["task"]])

    def direct(self, s):
        batch, _, _ = self.graph(s)
        with torch.no_grad():
            return self.model(batch)

    def grad_one_head(self, s):
        batch, _, leaves = self.jmpref.prepare_batch(self.model, [s], [s["task"]], requires_grad=True)
        E, _ = self.model(batch)
        t = self.jmpref.TASKS.index(s["task"])
        return torch.autograd.grad(E[:, t].sum(), leaves)


def build_models(with_reference: bool):
    if not with_reference:
        torch.manual_seed(0)
        return None, build_pretraining_model(jmp_s()).eval()
    import jmpref

    ref = jmpref.build_model("base", seed=0)
    jmpref.set_seeded_scale_factors(ref, seed=0)
    hp = {"backbone": dict(jmpref.BackboneConfig.base()), "output": {"num_mlps": 5},
          "tasks": [{"name": h.name, "normalization": {"y": {"mean": 0.0, "std": h.energy_std},
                                                        "force": {"mean": 0.0, "std": h.force_std}}}
                    for h in pretraining_heads()]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "jmp-s-random.pt"
        torch.save({"state_dict": ref.state_dict(), "hyper_parameters": hp}, path)
        ours = load_model(path, ema=False)
    return Reference(jmpref, ref), ours


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--recompute-min-slots", type=int, default=None, metavar="N",
                    help="our activation-recomputation threshold in padded graph slots "
                         "(jmp_calc.model.layers.set_recompute_min_slots; default 2**19: the JMP-S slab, 373k "
                         "slots, keeps its activations; 0 recomputes every call)")
    args = ap.parse_args()
    if args.recompute_min_slots is not None:
        from jmp_calc.model.layers import set_recompute_min_slots

        set_recompute_min_slots(args.recompute_min_slots)
    with_ref = bool(os.environ.get("JMP_SRC"))
    if with_ref:
        sys.path.insert(0, str(ROOT.parent / "shared" / "reference"))
    ref, ours = build_models(with_ref)
    ours_impl = Ours(ours)
    print(f"torch {torch.__version__}, JMP-S size ({sum(p.numel() for p in ours.parameters()):,} parameters), "
          f"float32, median of {args.reps}; reference: {'yes' if ref else 'no (set JMP_SRC)'}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for s in structures():
            # warm-up
            ours_impl.direct_one_head(s), ours_impl.grad_one_head(s)
            if ref:
                ref.direct(s), ref.grad_one_head(s)
            rows = {}
            cases = [("graph", lambda: ours_impl.graph(s), (lambda: ref.graph(s)) if ref else None),
                     ("E+F direct", lambda: ours_impl.direct_one_head(s), (lambda: ref.direct(s)) if ref else None),
                     ("E+F direct, ours 4 heads", lambda: ours_impl.direct_four_heads(s), None),
                     ("E+F grad (1 head)", lambda: ours_impl.grad_one_head(s),
                      (lambda: ref.grad_one_head(s)) if ref else None)]
            for name, fo, fr in cases:
                to, tr = [], []
                for _ in range(args.reps):
                    if fr:
                        tr.append(median_time(fr, 1))
                    to.append(median_time(fo, 1))
                rows[name] = (statistics.median(to), statistics.median(tr) if tr else None)
            print(f"\n{s['name']}  ({threads} thread{'s' if threads > 1 else ''})")
            print(f"  {'':28s} {'ours [s]':>10s} {'original [s]':>13s} {'speed-up':>9s}")
            for name, (to, tr) in rows.items():
                sp = f"{tr / to:8.2f}x" if tr else ""
                print(f"  {name:28s} {to:10.4f} {tr if tr else float('nan'):13.4f} {sp}")


if __name__ == "__main__":
    main()
