"""Research experiments run from a checkout of the repository (not installed with the package): they read and write
``data/``, ``runs/`` and ``examples/results/`` relative to the repository root. Run them from there, e.g.
``python -m experiments.mini_jmp.driver report``."""
