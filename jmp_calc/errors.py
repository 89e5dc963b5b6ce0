"""The error types of jmp_calc, in one place (``from jmp_calc import InputError`` etc.).

Every one is a ``ValueError`` whose message names the problem (the structure, option, file or field and why), so
bad input ends in one clear line instead of a deep torch traceback. The training stack (``training``) reuses
:class:`ConfigError` for its run configurations.
"""

from __future__ import annotations

__all__ = ["InputError", "ConfigError", "CheckpointError", "UnsafeCheckpointError", "ModelCardError",
           "ModelNotAvailableError", "UnknownModelError"]


class InputError(ValueError):
    """A structure or option cannot be evaluated (the message says which and why)."""


class ConfigError(ValueError):
    """A configuration value is missing, unknown or inconsistent."""


class CheckpointError(ValueError):
    """The file is missing, truncated, or not the kind of checkpoint expected."""


class UnsafeCheckpointError(CheckpointError):
    """The pickle references globals that could execute code when loaded."""


class ModelCardError(CheckpointError):
    """A model card (the ``card`` of ``config.json``) has an unknown or ill-typed field (names the file and field)."""


class ModelNotAvailableError(CheckpointError):
    """The model cannot be obtained here (offline and not cached, gated, missing, or not published)."""


class UnknownModelError(ValueError):
    """No model of that name in the registry."""
