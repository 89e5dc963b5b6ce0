"""Checkpoints: original JMP Lightning files, our safetensors directories, and (by name) the Hub registry."""

from __future__ import annotations

from pathlib import Path

from .hub import ModelNotAvailableError, fetch
from .jmp_checkpoint import JMP_LICENSE, load_jmp_checkpoint
from .model_dir import load_model_dir, save_model
from .registry import REGISTRY, ModelEntry, list_models
from .safe_load import CheckpointError, UnsafeCheckpointError

__all__ = ["load_model", "embedded_models", "DEFAULT_MODEL", "REGISTRY", "ModelEntry", "list_models",
           "ModelNotAvailableError", "load_jmp_checkpoint", "load_model_dir", "save_model", "CheckpointError",
           "UnsafeCheckpointError", "JMP_LICENSE"]


#: the model shipped inside the package, used by ``JMPCalculator()`` with no argument
DEFAULT_MODEL = "jmp-mini-general"
EMBEDDED_DIR = Path(__file__).resolve().parents[1] / "models"


def embedded_models() -> list[str]:
    """Names of the models shipped inside the package (usable offline)."""
    return sorted(p.name for p in EMBEDDED_DIR.iterdir() if (p / "config.json").is_file()) \
        if EMBEDDED_DIR.is_dir() else []


def load_model(name_or_path=None, *, ema: bool = True):
    """A :class:`~jmp_calc.model.JMPModel` from: nothing (the embedded default model), the name of an embedded
    model, a model directory, a ``model.safetensors`` file inside one, an original JMP Lightning checkpoint
    (``.pt``/``.ckpt``), or an already built model (returned as is)."""
    from ..model.jmp import JMPModel

    if isinstance(name_or_path, JMPModel):
        return name_or_path
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    if isinstance(name_or_path, str) and (EMBEDDED_DIR / name_or_path / "config.json").is_file():
        return load_model_dir(EMBEDDED_DIR / name_or_path)
    if isinstance(name_or_path, str) and name_or_path in REGISTRY:
        entry = REGISTRY[name_or_path]
        if entry.source == "embedded":
            raise CheckpointError(f"the embedded model {entry.name!r} is missing from this installation "
                                  f"({EMBEDDED_DIR}); reinstall jmp-calc")
        local = fetch(entry)
        model = load_jmp_checkpoint(local, ema=ema) if entry.kind == "jmp-lightning" else load_model_dir(local.parent)
        model.registry_entry = entry
        return model
    path = Path(name_or_path)
    if path.is_dir():
        return load_model_dir(path)
    if path.is_file():
        if path.suffix == ".safetensors":
            return load_model_dir(path.parent)
        return load_jmp_checkpoint(path, ema=ema)
    raise CheckpointError(f"no model at {str(name_or_path)!r}: expected an embedded model name "
                          f"({', '.join(embedded_models()) or 'none installed'}), a model directory, a .safetensors "
                          "file or a JMP checkpoint (.pt/.ckpt)")
