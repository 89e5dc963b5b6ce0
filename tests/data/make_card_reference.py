"""Reference outputs (tests/data/card_reference.npz) of every shipped model and both checkpoint formats, computed
with the code before the typed model card (commit 3c88e94); tests/test_card.py checks that loading through
ModelCard gives the same numbers. The structures and models are those of card_cases.py (beside this script). Made
with::

    git archive 3c88e94 jmp_calc | tar -x -C OLD
    PYTHONPATH=OLD python tests/data/make_card_reference.py tests/data/card_reference.npz \
        tests/data/fixtures/jmp-tiny-random.pt tests/data/jmp-ref-small.pt /tmp/small_dir

The ``3/...`` entries (``jmp-mini-s``) were remade on 2026-12-02 when the v2 backbone replaced the v1 weights: the
same command with the new ``jmp_calc/models/jmp-mini-s`` copied into OLD, only those entries taken (the others came
out equal to ~1e-15 and were kept as they were). The ``0/...`` entries (``jmp-mini-general``) were remade the
same way on 2026-12-03 when the v5 default model (configs/mini_general_v5.yaml) replaced the v1 one, and the
``3/...`` entries again later that day when ``jmp-mini-s`` became the backbone with the conservative-force tail
(configs/mini_s_v2_cons.yaml); every shipped model of this tree copied into OLD, the other entries equal. The
``0/...`` entries again on 2026-12-06 for the v8 default model (configs/mini_general_v8.yaml); OLD's quadruplet
layout is the one per output triplet, so the test also checks the per-qint-edge layout against it.
"""
import sys
import warnings

import numpy as np
from card_cases import cases, evaluated, structures  # beside this script

from jmp_calc import JMPCalculator
from jmp_calc.io import load_model, save_model


def main(out, tiny, small, tmp):
    """``out``: npz to write; ``tiny``, ``small``: the two checkpoints; ``tmp``: a scratch model directory."""
    save_model(load_model(small, ema=False), tmp, overwrite=True)  # a checkpoint converted to a model directory
    arrays = {}
    warnings.simplefilter("ignore")
    for i, (model, kw) in enumerate(cases(tiny, small, tmp)):
        calc = JMPCalculator(model, dtype="float64", **kw)
        for name, atoms in structures().items():
            if not evaluated(model, name):
                continue
            r = calc.potential.predict([atoms])[0]
            arrays[f"{i}/{name}/energy"] = np.array(r["energy"])
            arrays[f"{i}/{name}/forces"] = r["forces"]
    np.savez_compressed(out, **arrays)
    print(len(arrays), "arrays")


if __name__ == "__main__":
    main(*sys.argv[1:5])
