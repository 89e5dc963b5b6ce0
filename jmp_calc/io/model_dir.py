"""Our own model format: a directory with ``model.safetensors`` (weights), ``config.json`` (architecture, heads,
units, graph settings, card) and optionally ``README.md`` (the model card for people).

Writing is atomic: files go to a temporary sibling directory that replaces the target only when complete, so an
interrupted export never leaves a half-written model behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ..card import ModelCard
from ..config import ConfigError, GemNetOCConfig, HeadConfig
from ..model.jmp import JMPModel
from .safe_load import CheckpointError

__all__ = ["save_model", "load_model_dir", "read_config", "FORMAT", "FORMAT_VERSION", "WEIGHTS", "CONFIG"]

FORMAT = "jmp_calc"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def save_model(model: JMPModel, directory: str | Path, *, card: ModelCard | dict | None = None,
               readme: str | None = None, overwrite: bool = False) -> Path:
    """Write ``model`` to ``directory`` (model.safetensors + config.json [+ README.md]); returns the path.

    ``card``: the model card to write (a :class:`~jmp_calc.card.ModelCard` or its dict, validated); default: the
    model's own ``model.card``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    card = model.card if card is None else ModelCard.from_dict(card, where=f"save_model({directory}, card=...)")
    card.check_heads(model.head_names, where=f"save_model({directory}, card=...)")
    if directory.exists() and not overwrite:
        raise FileExistsError(f"{directory} exists; pass overwrite=True to replace it")
    directory.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "backbone": model.config.to_dict(),
        "heads": [h.to_dict() for h in model.heads],
        "card": card.to_dict(),
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        save_file(state, str(tmp / WEIGHTS), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=False) + "\n")
        if readme is not None:
            (tmp / "README.md").write_text(readme)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a model directory is as readable as any other
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~umask)
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def read_config(directory: str | Path) -> dict:
    directory = Path(directory)
    path = directory / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a jmp_calc model directory (no {CONFIG})")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format is {config.get('format')!r}, expected {FORMAT!r}")
    if int(config.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {config['format_version']} is newer than this jmp_calc "
                              f"supports ({FORMAT_VERSION}); upgrade jmp_calc")
    return config


def load_model_dir(directory: str | Path) -> JMPModel:
    """Load a model written by :func:`save_model` (strict: every tensor used, none missing)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    config = read_config(directory)
    where = str(directory / CONFIG)
    try:
        backbone = GemNetOCConfig.from_dict(config["backbone"])
        heads = [HeadConfig.from_dict(h) for h in config["heads"]]
    except (KeyError, ConfigError, TypeError) as exc:
        raise CheckpointError(f"{where}: invalid model config ({exc})") from None
    card = ModelCard.from_dict(config.get("card"), where=where)
    card.check_heads([h.name for h in heads], where=where)
    try:
        model = JMPModel(backbone, heads, card=card)
    except (ConfigError, ValueError) as exc:
        raise CheckpointError(f"{where}: invalid model config ({exc})") from None
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{directory} has no {WEIGHTS}")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights} is truncated or corrupt: {exc}") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{weights} does not match {CONFIG}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.eval()
    model.source = {"format": FORMAT, "path": str(directory), "license": card.license}
    return model

