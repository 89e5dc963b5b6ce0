"""The structures and models of tests/data/card_reference.npz, in one place: make_card_reference.py wrote the file
with them (against an old checkout, so nothing here imports jmp_calc) and tests/test_card.py checks against it.
Array keys are ``f"{i}/{name}/energy"`` and ``.../forces`` for case ``i`` of :func:`cases` and structure ``name``."""

from __future__ import annotations

import numpy as np
from ase.build import add_adsorbate, bulk, fcc111, molecule

__all__ = ["structures", "cases", "evaluated"]


def structures() -> dict:
    """Rattled bulk Cu (4 atoms), a tagged Cu(111) slab with an O adsorbate, methanol: new Atoms on each call."""
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    cu.rattle(0.05, seed=1)
    slab = fcc111("Cu", (2, 2, 3), vacuum=6.0)
    add_adsorbate(slab, "O", 1.5, "fcc")
    slab.rattle(0.05, seed=2)
    slab.set_tags(np.r_[np.repeat([3, 2, 1], 4), 0])
    mol = molecule("CH3OH")
    mol.rattle(0.02, seed=3)
    return {"cu": cu, "slab": slab, "mol": mol}


def cases(tiny, small, small_dir) -> list[tuple[object, dict]]:
    """(model, JMPCalculator keyword arguments) in array-key order: the shipped models, the two checkpoints
    ``tiny`` (random weights) and ``small``, and ``small_dir``, ``small`` converted to a model directory."""
    return [("jmp-mini-general", {}), ("jmp-mini-emt", {}), ("jmp-mini-s-ethanol", {}),
            ("jmp-mini-s", {"head": "mini-oc20"}), (tiny, {"head": "oc20"}), (small, {"head": "ani1x"}),
            (small_dir, {"head": "oc20"})]


def evaluated(model, name: str) -> bool:
    """Whether the reference has structure ``name`` for ``model`` (the ethanol model: the molecule only)."""
    return model != "jmp-mini-s-ethanol" or name == "mol"
