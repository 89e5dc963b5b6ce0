"""Reference outputs (tests/data/card_reference.npz) of every shipped model and both checkpoint formats, computed
with the code before the typed model card (commit 3c88e94); tests/test_card.py checks that loading through
ModelCard gives the same numbers. Made with::

    git archive 3c88e94 jmp_calc | tar -x -C OLD
    PYTHONPATH=OLD python tests/data/make_card_reference.py tests/data/card_reference.npz \
        tests/data/fixtures/jmp-tiny-random.pt tests/data/jmp-ref-small.pt /tmp/small_dir
"""
import sys
import numpy as np
from ase.build import bulk, fcc111, molecule, add_adsorbate

from jmp_calc import JMPCalculator
from jmp_calc.io import save_model, load_model

def structures():
    cu = bulk("Cu", "fcc", a=3.6, cubic=True); cu.rattle(0.05, seed=1)
    slab = fcc111("Cu", (2, 2, 3), vacuum=6.0); add_adsorbate(slab, "O", 1.5, "fcc"); slab.rattle(0.05, seed=2)
    slab.set_tags(np.r_[np.repeat([3, 2, 1], 4), 0])
    mol = molecule("CH3OH"); mol.rattle(0.02, seed=3)
    return {"cu": cu, "slab": slab, "mol": mol}

OUT, TINY, SMALL, TMP = sys.argv[1:5]  # npz to write, tests/data/fixtures/jmp-tiny-random.pt, tests/data/jmp-ref-small.pt, scratch dir
cases = {"jmp-mini-general": {}, "jmp-mini-emt": {}, "jmp-mini-s-ethanol": {}, "jmp-mini-s": {"head": "mini-oc20"},
         TINY: {"head": "oc20"}, SMALL: {"head": "ani1x"}}
save_model(load_model(SMALL, ema=False), TMP, overwrite=True)  # a checkpoint converted to a model directory
cases[TMP] = {"head": "oc20"}
out = {}
import warnings
warnings.simplefilter("ignore")
for i, (model, kw) in enumerate(cases.items()):
    calc = JMPCalculator(model, dtype="float64", **kw)
    for name, atoms in structures().items():
        if model == "jmp-mini-s-ethanol" and name != "mol":
            continue
        r = calc.potential.predict([atoms])[0]
        out[f"{i}/{name}/energy"] = np.array(r["energy"])
        out[f"{i}/{name}/forces"] = r["forces"]
np.savez_compressed(OUT, **out)
print(len(out), "arrays")
