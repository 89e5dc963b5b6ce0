"""Checkpoints: original JMP Lightning files, our safetensors directories, and (by name) the Hub registry."""

from __future__ import annotations

from pathlib import Path

from .jmp_checkpoint import JMP_LICENSE, load_jmp_checkpoint
from .model_dir import load_model_dir, save_model
from .safe_load import CheckpointError, UnsafeCheckpointError

__all__ = ["load_model", "load_jmp_checkpoint", "load_model_dir", "save_model", "CheckpointError",
           "UnsafeCheckpointError", "JMP_LICENSE"]


def load_model(name_or_path, *, ema: bool = True):
    """A :class:`~jmp_calc.model.JMPModel` from a model directory, a ``model.safetensors`` file inside one, an
    original JMP Lightning checkpoint (``.pt``/``.ckpt``), or an already built model (returned as is)."""
    from ..model.jmp import JMPModel

    if isinstance(name_or_path, JMPModel):
        return name_or_path
    path = Path(name_or_path)
    if path.is_dir():
        return load_model_dir(path)
    if path.is_file():
        if path.suffix == ".safetensors":
            return load_model_dir(path.parent)
        return load_jmp_checkpoint(path, ema=ema)
    raise CheckpointError(f"no model at {str(name_or_path)!r}: expected a model directory, a .safetensors file or "
                          "a JMP checkpoint (.pt/.ckpt)")
