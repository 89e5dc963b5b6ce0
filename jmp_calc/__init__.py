"""jmp_calc: GemNet-OC / JMP models as ASE calculators, in plain PyTorch.

>>> from jmp_calc import JMPCalculator
>>> atoms.calc = JMPCalculator("path/to/jmp-s.pt", head="oc20")
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (
    CheckpointError,
    ConfigError,
    InputError,
    ModelCardError,
    ModelNotAvailableError,
    UnknownModelError,
    UnsafeCheckpointError,
)

__all__ = ["JMPCalculator", "load_model", "list_models", "embed", "Potential", "__version__", "InputError",
           "ConfigError", "CheckpointError", "UnsafeCheckpointError", "ModelCardError", "ModelNotAvailableError",
           "UnknownModelError"]


def __getattr__(name):  # lazy: importing jmp_calc stays cheap and never touches the network
    if name == "JMPCalculator":
        from .calculator import JMPCalculator

        return JMPCalculator
    if name == "load_model":
        from .io import load_model

        return load_model
    if name == "embed":
        from .representations import embed

        return embed
    if name == "list_models":
        from .io.registry import list_models

        return list_models
    if name == "Potential":
        from .potential import Potential

        return Potential
    raise AttributeError(f"module 'jmp_calc' has no attribute {name!r}")
