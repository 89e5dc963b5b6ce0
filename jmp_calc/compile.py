"""An optional compiled forward pass: ``torch.compile`` (TorchInductor on CPU and GPU) of :class:`JMPModel`'s
forward, used by :class:`~jmp_calc.potential.Potential` (and so ``JMPCalculator``) with ``compile=True``.

* One compilation serves every structure size: the graph is traced with dynamic shapes (``dynamic=True``), so new
  atom, edge, triplet and quadruplet counts (MD, relaxations, other structures) reuse it. A new graph is compiled
  only for another head, dtype, device, force kind (direct vs -dE/dx, with or without stress) or a structure that
  changes a branch of the forward pass (e.g. an empty image-offset table: molecules vs cells, or sizes 0 and 1,
  which Dynamo specialises).
* Conservative forces and stress: the energy comes out of the compiled forward, the gradient is taken outside
  with ``torch.autograd.grad``; AOTAutograd compiled the backward graph together with the forward.
* Warm-up: the first call of each new graph compiles it (tens of seconds on one CPU core); its time is logged
  (logger ``jmp_calc.compile``, level INFO) and kept in :attr:`CompiledForward.compile_times`.
* Fallback: when ``torch.compile`` is missing or fails (no C++ compiler, an unsupported Python, a backend
  error), one :class:`RuntimeWarning` is issued and the model runs eagerly from then on, with the same results.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TypeVar

import torch

__all__ = ["CompileOptions", "CompiledForward", "compile_options"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class CompileOptions:
    """How the forward pass is compiled: ``torch.compile(fn, backend=backend, mode=mode, dynamic=dynamic)``.

    ``backend``: ``"inductor"`` (default: fused C++/OpenMP kernels on CPU, Triton on GPU), another registered
    backend name, or a callable backend. ``mode``: ``None`` (default), ``"reduce-overhead"`` (CUDA graphs; sizes
    that change every call defeat them) or ``"max-autotune"``. ``dynamic``: trace sizes symbolically (one graph
    for all sizes); ``False`` compiles one graph per distinct size (faster kernels, many compilations).
    ``skip_module_guards``: Dynamo does not re-check the model's module attributes (``training`` and the like)
    before every call (``torch.compiler.skip_guard_on_all_nn_modules_unsafe``): 1.5 -> 0.26 ms of guard
    evaluation per call of the embedded model on 32-atom Cu. The :class:`~jmp_calc.potential.Potential` never
    changes them; whoever does (``model.train()`` after compiling) must set it False. Weights changed in place are
    seen either way (they are inputs of the graph)."""

    backend: str | Callable = "inductor"
    mode: str | None = None
    dynamic: bool = True
    skip_module_guards: bool = True

    def compile_kwargs(self) -> dict:
        """Keyword arguments of ``torch.compile``."""
        kwargs = {"backend": self.backend, "mode": self.mode, "dynamic": self.dynamic}
        skip = getattr(torch.compiler, "skip_guard_on_all_nn_modules_unsafe", None)  # torch >= 2.7
        if self.skip_module_guards and skip is not None:
            kwargs["options"] = {"guard_filter_fn": skip}
        return kwargs


def compile_options(value) -> CompileOptions | None:
    """``compile=`` of :class:`~jmp_calc.potential.Potential`: False/None (eager), True (the defaults of
    :class:`CompileOptions`) or a :class:`CompileOptions`."""
    from .errors import InputError

    if value is None or value is False:
        return None
    if value is True:
        return CompileOptions()
    if isinstance(value, CompileOptions):
        return value
    raise InputError(f"compile must be True, False or a jmp_calc.compile.CompileOptions, got {value!r}")


def _graph_count() -> int:
    """Graphs Dynamo has compiled in this process (all functions): grows by one per (re)compilation."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _describe(exc: BaseException) -> str:
    """``Type: first line`` of ``exc`` and of the error it wraps (Dynamo wraps a backend's error in
    ``BackendCompilerFailed``, whose first line names only the backend)."""
    def line(e: BaseException) -> str:
        lines = [t.strip() for t in str(e).splitlines() if t.strip()]
        text = lines[0] if lines else ""
        if text.endswith(":") and len(lines) > 1:  # "backend='inductor' raised:" + the reason below it
            text = f"{text} {lines[1]}"
        return f"{type(e).__name__}: {text[:300]}" if text else type(e).__name__

    inner = getattr(exc, "inner_exception", None) or exc.__cause__
    return line(exc) if inner is None or inner is exc else f"{line(exc)} <- {line(inner)}"


class CompiledForward:
    """The model's forward through ``torch.compile``, falling back to the eager model (one warning) when
    compiling fails (see :meth:`evaluate`). Only the outputs :class:`Potential` needs are returned (``energy``,
    ``node_energy``, and ``forces`` with direct forces), so the compiled graph keeps no other outputs alive."""

    def __init__(self, model: torch.nn.Module, options: CompileOptions | None = None):
        self.model = model
        self.options = options or CompileOptions()
        #: why compiling failed (then every call is eager), or None
        self.failed: str | None = None
        #: seconds of each call that compiled a new graph (the first is the warm-up)
        self.compile_times: list[float] = []
        self._compiled = None
        try:
            self._compiled = torch.compile(self._forward, **self.options.compile_kwargs())
        except Exception as exc:  # noqa: BLE001 (missing dynamo, unsupported Python, unknown backend, ...)
            self._fail(exc)

    def _forward(self, g, heads, pos, cell, direct_forces):
        out = self.model(g, heads=heads, pos=pos, cell=cell, return_features=True, direct_forces=direct_forces)
        keep = ("energy", "node_energy", "forces")
        return {k: out[k] for k in keep if k in out}

    def _fail(self, exc: BaseException) -> None:
        from .validate import warn_user

        self.failed = _describe(exc)
        self._compiled = None
        warn_user(f"torch.compile of the model failed ({self.failed}); running it eagerly (same results, "
                  "uncompiled speed)", RuntimeWarning)

    @property
    def warmup_s(self) -> float | None:
        """Seconds of the first call (compilation included), or None before it / without compilation."""
        return self.compile_times[0] if self.compile_times else None

    def eager(self, g, *, heads: list[int], pos: torch.Tensor, cell: torch.Tensor, direct_forces: bool) -> dict:
        """The uncompiled forward (the same outputs)."""
        return self._forward(g, heads, pos, cell, direct_forces)

    def compiled(self, g, *, heads: list[int], pos: torch.Tensor, cell: torch.Tensor, direct_forces: bool) -> dict:
        """The compiled forward (compiles on the first call of a new graph); eager once compiling has failed."""
        if self._compiled is None:
            return self._forward(g, heads, pos, cell, direct_forces)
        return self._compiled(g, heads, pos, cell, direct_forces)

    def evaluate(self, compute: Callable[[Callable[..., dict]], T], g) -> T:
        """``compute(forward)`` with the compiled forward, where ``compute`` runs the forward and any gradient of
        its outputs (AOTAutograd compiles the backward graph at the first backward pass, so compile errors and
        compile time of the backward show up there). On an error the compiled path is given up (one warning) and
        ``compute`` runs again with the eager forward. ``g``: the batch (for the log line)."""
        if self._compiled is None:
            return compute(self.eager)
        before, t0 = _graph_count(), time.perf_counter()
        try:
            out = compute(self.compiled)
        except Exception as exc:  # noqa: BLE001 (BackendCompilerFailed, InvalidCxxCompiler, Unsupported, ...)
            self._fail(exc)
            return compute(self.eager)
        new = _graph_count() - before
        if new:
            dt = time.perf_counter() - t0
            self.compile_times.append(dt)
            log.info("compiled %d new graph(s) in %.1f s (%s; %d atoms, %d main edges)", new, dt,
                     "warm-up" if len(self.compile_times) == 1 else f"recompilation {len(self.compile_times) - 1}",
                     g.pos.shape[0], g.main.index.shape[1])
        return out
