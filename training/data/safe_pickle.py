"""Allow-list unpickling of dataset records (OC20/OC22 LMDB values).

A pickle can name any importable callable and call it (``os.system``, ``builtins.eval``, ...): ``pickle.loads`` of a
downloaded dataset runs whatever its author put in it. :func:`safe_loads` resolves only the globals that records of
torch-geometric ``Data`` objects, tensors, numpy arrays and builtin containers actually reference (found by pickling
real ones with protocols 2-5 and listing their globals with ``pickletools``) and refuses anything else *before* it is
called, with :class:`RefusedGlobal` naming it.

Tensors pickled by ``pickle.dumps`` store their bytes as a nested ``torch.save`` payload rebuilt by
``torch.storage._load_from_bytes``, which itself calls ``torch.load(..., weights_only=False)``: a second, unguarded
unpickler. It is replaced here by a version that loads the payload with ``weights_only=True`` (torch's own allow-list)
onto the CPU.
"""

from __future__ import annotations

import importlib
import io
import pickle
import re
from typing import Any, Callable

__all__ = ["RefusedGlobal", "safe_loads", "allowed_globals"]


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle referenced a global that is not on the allow-list; ``name`` is ``module.qualname``."""

    def __init__(self, name: str, detail: str = ""):
        self.name = name
        super().__init__(f"refused global '{name}'" + (f" ({detail})" if detail else ""))


def _numpy_core(submodule: str):
    """numpy's private ``_core`` (numpy >= 2) or ``core`` (numpy 1.x) submodule, without the 2.x alias warning."""
    try:
        return importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:  # numpy 1.x
        return importlib.import_module(f"numpy.core.{submodule}")


def _load_storage_from_bytes(b: bytes):
    """``torch.storage._load_from_bytes`` with torch's weights-only unpickler instead of an unrestricted one."""
    import torch

    try:
        return torch.load(io.BytesIO(b), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        raise RefusedGlobal(found.group(1) if found else "torch.storage._load_from_bytes payload",
                            "inside a tensor's storage bytes") from None


def _attr(module: str, name: str) -> Callable[[], Any]:
    return lambda: getattr(importlib.import_module(module), name)


# (module, name) as a pickle spells it -> how to get the object. Resolved lazily: torch / torch_geometric are imported
# only when a record needs them.
_ALLOWED: dict[tuple[str, str], Callable[[], Any]] = {
    **{("builtins", n): _attr("builtins", n) for n in (
        "dict", "list", "tuple", "set", "frozenset", "bytearray", "bytes", "str", "int", "float", "complex", "bool",
        "slice")},
    ("_codecs", "encode"): _attr("_codecs", "encode"),  # protocol 2 spells bytes as encode(str, "latin1")
    ("collections", "OrderedDict"): _attr("collections", "OrderedDict"),
    ("numpy", "ndarray"): _attr("numpy", "ndarray"),
    ("numpy", "dtype"): _attr("numpy", "dtype"),
    **{(f"numpy.{core}.{sub}", n): (lambda sub=sub, n=n: getattr(_numpy_core(sub), n))
       for core in ("_core", "core")
       for sub, n in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))},
    ("torch._utils", "_rebuild_tensor"): _attr("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"): _attr("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"): _attr("torch._utils", "_rebuild_parameter"),
    ("torch.storage", "_load_from_bytes"): lambda: _load_storage_from_bytes,
    ("torch", "Size"): _attr("torch", "Size"),
    ("torch", "device"): _attr("torch", "device"),
    ("torch_geometric.data.data", "Data"): _attr("torch_geometric.data.data", "Data"),
    ("torch_geometric.data.data", "DataEdgeAttr"): _attr("torch_geometric.data.data", "DataEdgeAttr"),
    ("torch_geometric.data.data", "DataTensorAttr"): _attr("torch_geometric.data.data", "DataTensorAttr"),
    ("torch_geometric.data.storage", "GlobalStorage"): _attr("torch_geometric.data.storage", "GlobalStorage"),
}


def allowed_globals() -> list[str]:
    """The allow-list as ``module.name`` strings (plus every ``torch.<dtype>``, e.g. ``torch.float32``)."""
    return sorted(f"{m}.{n}" for m, n in _ALLOWED) + ["torch.<dtype>"]


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        get = _ALLOWED.get((module, name))
        if get is not None:
            return get()
        if module == "torch" and name.isidentifier():  # dtypes: torch.float32, torch.int64, ...
            import torch

            value = getattr(torch, name, None)
            if isinstance(value, torch.dtype):
                return value
        raise RefusedGlobal(f"{module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not used by dataset records")


def safe_loads(data: bytes) -> Any:
    """``pickle.loads`` restricted to the allow-list; raises :class:`RefusedGlobal` (before calling anything that is
    not on it) or another ``pickle.UnpicklingError`` / ``EOFError`` / ... for malformed bytes."""
    return _Unpickler(io.BytesIO(data)).load()
