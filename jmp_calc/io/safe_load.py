"""Reading PyTorch pickles without executing code.

``torch.load(weights_only=True)`` refuses every class it does not know. Released Lightning checkpoints also
pickle harmless objects in their hyper-parameters (``pathlib`` paths, config classes of the training code). We
allow the path classes, and replace any other *class* by an inert stub that only records its state, after
refusing outright any global from a module that can run code (builtins, os, subprocess, ...).
"""

from __future__ import annotations

import pathlib
import pickle
import zipfile
from pathlib import Path

import torch

__all__ = ["CheckpointError", "UnsafeCheckpointError", "safe_torch_load", "to_plain"]


from ..errors import CheckpointError, UnsafeCheckpointError

_PATH_CLASSES = [pathlib.PosixPath, pathlib.PurePosixPath, pathlib.WindowsPath, pathlib.PureWindowsPath,
                 pathlib.Path, pathlib.PurePath]

#: modules whose globals are never stubbed: a pickle naming them is refused
_DANGEROUS_MODULES = {
    "builtins", "__builtin__", "os", "posix", "nt", "subprocess", "sys", "socket", "shutil", "importlib", "runpy",
    "pickle", "_pickle", "types", "code", "codeop", "ctypes", "pty", "webbrowser", "operator", "functools",
    "marshal", "io", "_io", "tempfile", "signal", "multiprocessing", "threading", "asyncio", "urllib", "http",
    "requests", "pdb", "inspect", "torch._C", "torch.ops", "sh", "commands", "platform", "glob", "site",
    "torch.hub", "torch.jit", "torch.serialization", "eval", "exec",
}


class _Stub:
    """Inert stand-in for a pickled object of an unknown class: keeps constructor args and state, runs nothing."""

    _stub_name = "?"

    def __new__(cls, *args, **kwargs):  # both cls(*args) and pickle's NEWOBJ end here
        obj = object.__new__(cls)
        obj._args, obj._kwargs, obj._state = args, kwargs, None
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self._state = state

    def __repr__(self):
        return f"<stub {self._stub_name}>"


def _is_dangerous(qualified: str) -> bool:
    module = qualified.rsplit(".", 1)[0] if "." in qualified else qualified
    parts = module.split(".")
    return any(".".join(parts[: i + 1]) in _DANGEROUS_MODULES for i in range(len(parts))) or qualified in (
        "eval", "exec", "compile", "open", "__import__", "getattr", "setattr", "apply")


def _stub_for(qualified: str):
    module, _, name = qualified.rpartition(".")
    cls = type(name or qualified, (_Stub,), {"_stub_name": qualified, "__module__": module or "builtins"})
    return cls


def safe_torch_load(path: str | Path, *, map_location="cpu"):
    """``torch.load`` with ``weights_only=True``; unknown harmless classes become inert stubs (see module doc)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (not a zip archive; truncated or wrong file?)")
    allowed: list = list(_PATH_CLASSES)
    for _ in range(3):
        try:
            with torch.serialization.safe_globals(allowed):
                return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:
            try:
                names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
            except Exception as inner:  # noqa: BLE001 - anything here means the pickle is unreadable
                raise CheckpointError(f"{path} could not be read as a checkpoint: {inner}") from None
            known = {f"{c.__module__}.{c.__qualname__}" for c in _PATH_CLASSES}
            names = [n for n in names if n not in known]
            bad = sorted(n for n in names if _is_dangerous(n))
            if bad:
                raise UnsafeCheckpointError(
                    f"refusing to load {path}: its pickle references {bad}, which could execute code. "
                    "Only load checkpoints from sources you trust, and convert them with a trusted tool.") from None
            if not names:
                raise CheckpointError(f"{path} could not be unpickled safely: {exc}") from None
            allowed = allowed + [(_stub_for(n), n) for n in names]
        except (RuntimeError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise CheckpointError(f"{path} is truncated or corrupt: {exc}") from None
    raise CheckpointError(f"{path} could not be unpickled safely")


def to_plain(obj):
    """Recursively turn stubs (and pydantic-style states) into dicts, paths into strings."""
    if isinstance(obj, _Stub):
        state = obj._state
        if isinstance(state, dict) and "__dict__" in state:  # pydantic v2 __getstate__
            state = state["__dict__"]
        if isinstance(state, tuple) and state and isinstance(state[0], dict):  # (dict, slots)
            state = state[0]
        if state is None and obj._args:
            return to_plain(obj._args[0]) if len(obj._args) == 1 else [to_plain(a) for a in obj._args]
        return to_plain(state) if state is not None else {}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj) if isinstance(obj, list) else tuple(to_plain(v) for v in obj)
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    return obj
