"""Reference outputs (tests/data/card_reference.npz) of every shipped model and both checkpoint formats, computed
with the code before the typed model card (commit 3c88e94); tests/test_card.py checks that loading through
ModelCard gives the same numbers. Made with::

    git archive 3c88e94 jmp_calc | tar -x -C OLD
    PYTHONPATH=OLD python tests/data/make_card_reference.py tests/data/card_reference.npz \
        tests/data/fixtures/jmp-tiny-random.pt tests/data/jmp-ref-small.pt /tmp/small_dir
"""
import sys
import warnings

import numpy as np
from ase.build import add_adsorbate, bulk, fcc111, molecule

from jmp_calc import JMPCalculator
from jmp_calc.io import load_model, save_model


def structures():
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    cu.rattle(0.05, seed=1)
    slab = fcc111("Cu", (2, 2, 3), vacuum=6.0)
    add_adsorbate(slab, "O", 1.5, "fcc")
    slab.rattle(0.05, seed=2)
    slab.set_tags(np.r_[np.repeat([3, 2, 1], 4), 0])
    mol = molecule("CH3OH")
    mol.rattle(0.02, seed=3)
    return {"cu": cu, "slab": slab, "mol": mol}


def main(out, tiny, small, tmp):
    """``out``: npz to write; ``tiny``, ``small``: the two checkpoints; ``tmp``: a scratch model directory."""
    cases = {"jmp-mini-general": {}, "jmp-mini-emt": {}, "jmp-mini-s-ethanol": {}, "jmp-mini-s": {"head": "mini-oc20"},
             tiny: {"head": "oc20"}, small: {"head": "ani1x"}}
    save_model(load_model(small, ema=False), tmp, overwrite=True)  # a checkpoint converted to a model directory
    cases[tmp] = {"head": "oc20"}
    arrays = {}
    warnings.simplefilter("ignore")
    for i, (model, kw) in enumerate(cases.items()):
        calc = JMPCalculator(model, dtype="float64", **kw)
        for name, atoms in structures().items():
            if model == "jmp-mini-s-ethanol" and name != "mol":
                continue
            r = calc.potential.predict([atoms])[0]
            arrays[f"{i}/{name}/energy"] = np.array(r["energy"])
            arrays[f"{i}/{name}/forces"] = r["forces"]
    np.savez_compressed(out, **arrays)
    print(len(arrays), "arrays")


if __name__ == "__main__":
    main(*sys.argv[1:5])
