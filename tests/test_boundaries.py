"""Package boundaries: jmp_calc never imports training or Lightning, and importing it stays light."""

import subprocess
import sys


def test_jmp_calc_does_not_import_training_or_lightning():
    code = ("import sys, jmp_calc, jmp_calc.calculator, jmp_calc.io, jmp_calc.graph, jmp_calc.model, "
            "jmp_calc.potential;"
            "bad=[m for m in sys.modules if m.split('.')[0] in ('training','lightning','pytorch_lightning')];"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
