"""Small building blocks: bias-free dense layers with GemNet's scaled SiLU, residual layers, scale factors."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ScaledSiLU", "Dense", "ResidualLayer", "ScaleFactor", "activation", "he_orthogonal_", "recomputed",
           "recompute_wanted", "RECOMPUTE", "const", "set_recompute_min_slots",
           "set_block_recompute_min_slots", "block_recompute_wanted"]

#: recompute the triplet/quadruplet aggregations in the backward pass instead of keeping their padded
#: intermediates (the bulk of the memory of -dE/dx; see :func:`recomputed`). Module-level switch for benchmarks.
RECOMPUTE = True
#: a call whose graphs have at least this many padded slots (:attr:`GraphBatch.padded_slots
#: <jmp_calc.graph.batch.GraphBatch.padded_slots>`: its largest padded index table, the quadruplet grid) is
#: "large": with a gradient recorded it recomputes its triplet and quadruplet aggregations in backward instead of
#: keeping them (and from :data:`BLOCK_RECOMPUTE_MIN_SLOTS` its bases and whole interaction blocks too). Smaller
#: calls keep everything (recomputing everything costs ~1.8x the time of -dE/dx). Measured in
#: slots of the graph, not in elements or bytes, so the decision is the structure's size whatever the model's
#: width: 2**19 slots is ~150 atoms of bulk Cu for the default model (cutoff 6 A) and ~140 atoms of an OC20-like
#: slab for JMP-S/L (12 A, 30 neighbours; the 98-atom Pt(111)+CO slab of ``benchmarks/inference.py`` has 373k).
#: The inference default; training raises it (:func:`set_recompute_min_slots`)
RECOMPUTE_MIN_SLOTS = 2**19
#: in a large call, the quadruplet aggregation (the largest by far) is recomputed in row chunks of about this
#: many padded elements, each its own checkpoint, so its backward temporaries stay this size whatever the system
CHUNK_ELEMENTS = 2**20
#: in a large call of at least this many padded slots, also recompute the bases and each interaction block as a
#: whole in backward (nested around the aggregations' checkpoints): the edge activations of every block are then not
#: held either. Default model, bulk Cu E+F+S: without it 789 kB/atom at 500 atoms and 1.45x faster than with it
#: (577 kB/atom); ~600 Cu atoms, or ~550 atoms of an OC20-like slab for JMP-S, where JMP-S would hold ~16 MB/atom
BLOCK_RECOMPUTE_MIN_SLOTS = 2**21


def set_block_recompute_min_slots(min_slots: int) -> int:
    """Set :data:`BLOCK_RECOMPUTE_MIN_SLOTS` for this process and return the previous value (between calls only,
    as :func:`set_recompute_min_slots`). Lower it for wide models on little memory: JMP-S on the 98-atom slab of
    ``benchmarks/inference.py`` (-dE/dx, peak above aspirin's) holds 2.0 GB keeping everything, 1.6 GB with the
    aggregations recomputed, 0.9 GB with the bases and blocks too, which took ~1.8x the time of keeping
    everything (3.1 -> 5.7 s, one thread)."""
    global BLOCK_RECOMPUTE_MIN_SLOTS
    previous, BLOCK_RECOMPUTE_MIN_SLOTS = BLOCK_RECOMPUTE_MIN_SLOTS, int(min_slots)
    return previous


def block_recompute_wanted(*args, slots: int) -> bool:
    """Whether the bases and the interaction blocks of a call of ``slots`` padded slots are recomputed whole:
    the call is large (:func:`recompute_wanted`) and has at least :data:`BLOCK_RECOMPUTE_MIN_SLOTS` slots."""
    return slots >= BLOCK_RECOMPUTE_MIN_SLOTS and recompute_wanted(*args, slots=slots)


_CONSTS: dict = {}


def const(value: float, like: torch.Tensor):
    """``value`` as a cached 0-dim tensor of ``like``'s dtype and device, to multiply or divide by: the same
    arithmetic as the Python number (both are CPU scalars to the kernel), without the per-call conversion of the
    number to a tensor (three extra dispatcher calls per operation, forward and backward, ~1/4 of the op count
    of a small system's call). float32/float64 only; other dtypes (bf16 under autocast) get the Python number,
    whose reduced-precision arithmetic differs. Under ``torch.compile`` the Python number too: a traced graph
    folds it in, and a cache filled during tracing would be a guard that fails on the next call (recompilation)."""
    if like.dtype not in (torch.float32, torch.float64) or torch.compiler.is_compiling():
        return value
    key = (value, like.dtype, like.device)
    t = _CONSTS.get(key)
    if t is None:
        with torch.inference_mode(False):  # a normal tensor: autograd may save it later, outside inference mode
            t = torch.tensor(value, dtype=like.dtype, device=like.device)
        _CONSTS[key] = t
    return t


def set_recompute_min_slots(min_slots: int) -> int:
    """Set :data:`RECOMPUTE_MIN_SLOTS` for this process and return the previous value. Recomputing trades time
    for memory: a conservative training step (forces by double backward) recomputes each checkpointed block twice
    and runs at about half speed. ``training`` sets its own (``trainer.recompute_min_slots``). Change it between
    calls only, never between a forward pass and its backward: the recomputation must take the same path as the
    forward pass it replays."""
    global RECOMPUTE_MIN_SLOTS
    previous, RECOMPUTE_MIN_SLOTS = RECOMPUTE_MIN_SLOTS, int(min_slots)
    return previous


def recompute_wanted(*args, slots: int = 0) -> bool:
    """Whether :func:`recomputed` would recompute: a gradient is being recorded through ``args`` and the call is
    large (its graphs have ``slots`` >= :data:`RECOMPUTE_MIN_SLOTS` padded slots)."""
    return RECOMPUTE and slots >= RECOMPUTE_MIN_SLOTS and torch.is_grad_enabled() and \
        any(isinstance(a, torch.Tensor) and a.requires_grad for a in args)


def recomputed(fn, *args, slots: int = 0, force: bool = False):
    """``fn(*args)``, keeping only ``args`` for the backward pass when a gradient is being recorded and the call is
    large (``slots`` >= :data:`RECOMPUTE_MIN_SLOTS`; ``force``: whenever a gradient is recorded): activation
    checkpointing (non-reentrant, so it nests in double backward); the padded (rows, K, C) tensors of GemNet's
    aggregations are then rebuilt during backward instead of being held from forward to backward."""
    if recompute_wanted(*args, slots=RECOMPUTE_MIN_SLOTS if force else slots):
        from torch.utils.checkpoint import checkpoint

        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


class ScaledSiLU(nn.Module):
    """``silu(x) / 0.6``: keeps unit variance for unit-variance inputs.

    Works in place on fresh intermediate tensors (``inplace=True``, set by :class:`Dense`) when no gradient is
    being recorded; the scaling is always in place on silu's own output (silu's backward keeps its input).
    """

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inplace = self.inplace and not torch.is_grad_enabled()
        return torch.nn.functional.silu(x, inplace=inplace).mul_(const(1.0 / 0.6, x))


def activation(name: str | None, inplace: bool = False) -> nn.Module:
    if name is None:
        return nn.Identity()
    name = name.lower()
    if name in ("scaled_silu", "scaled_swish"):
        return ScaledSiLU(inplace=inplace)
    if name in ("silu", "swish"):
        return nn.SiLU()
    raise ValueError(f"unknown activation {name!r}")


@torch.no_grad()
def he_orthogonal_(weight: torch.Tensor) -> torch.Tensor:
    """Semi-orthogonal init standardised to zero mean and variance 1/fan_in (GemNet's He-orthogonal init).

    For 3-D basis weights ``(num_radial, num_spherical, out)`` the last axis is the output axis.
    """
    nn.init.orthogonal_(weight)
    if weight.ndim == 3:
        fan_in, dims = weight.shape[:-1].numel(), (0, 1)
    else:
        fan_in, dims = weight.shape[1], (1,)
    var, mean = torch.var_mean(weight, dim=dims, unbiased=True, keepdim=True)
    weight.copy_((weight - mean) / torch.sqrt(var + 1e-6) / math.sqrt(fan_in))
    return weight


class Dense(nn.Module):
    """``activation(x @ W.T)`` with an optional bias and dropout. Parameters live in ``self.linear``."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool = False, act: str | None = None,
                 dropout: float | None = None):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        he_orthogonal_(self.linear.weight)
        if bias:
            nn.init.zeros_(self.linear.bias)
        self.act = activation(act, inplace=True)  # acts on the fresh output of self.linear
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.act(self.linear(x)))


class ResidualLayer(nn.Module):
    """``(x + f(x)) / sqrt(2)`` with f two dense layers with activation (``dense_mlp.0``, ``dense_mlp.1``)."""

    def __init__(self, units: int, *, act: str | None, dropout: float | None = None, n_layers: int = 2):
        super().__init__()
        self.dense_mlp = nn.Sequential(*[Dense(units, units, act=act, dropout=dropout) for _ in range(n_layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # dense_mlp's output is a fresh tensor nothing else holds: update it in place
        return self.dense_mlp(x).add_(x).mul_(const(1.0 / math.sqrt(2.0), x))


class ScaleFactor(nn.Module):
    """A fitted scalar that multiplies its input. ``0`` means "not fitted" and acts as identity (JMP convention).

    The value is a persistent buffer so checkpoints carry it; :meth:`fit_` sets it from activation statistics.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("scale_factor", torch.tensor(0.0))
        self._stats: list[float] | None = None
        #: (buffer, its version, dtype, multiplier): the multiplier of the current buffer value, rebuilt when the
        #: buffer is replaced (.to(), load_state_dict) or changed in place (fit, copy_)
        self._cached: tuple | None = None

    def forward(self, x: torch.Tensor, ref=None) -> torch.Tensor:
        """``ref``: the input whose variance the output should keep (only used while fitting); may be a
        zero-argument callable so that it is only materialised then."""
        if self._stats is not None:
            self._observe(x, ref() if callable(ref) else ref)
        return x * self.multiplier(x.dtype)

    def multiplier(self, dtype: torch.dtype) -> torch.Tensor:
        """The factor as a 0-dim tensor of ``dtype`` (1 when not fitted), cached while the buffer is unchanged."""
        s, c = self.scale_factor, self._cached
        if torch.compiler.is_compiling():  # part of the traced graph: a cache would be guarded on (and break it)
            return self._factor(s, dtype)
        if c is None or c[0] is not s or c[1] != s._version or c[2] != dtype:
            # a normal tensor (autograd saves it) even when first built under inference mode
            with torch.inference_mode(False), torch.no_grad():
                m = self._factor(s, dtype)
            c = self._cached = (s, s._version, dtype, m)
        return c[3]

    @staticmethod
    def _factor(s: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``s`` as ``dtype``, 1 where not fitted (0); branch-free on purpose: no host sync on GPU."""
        return torch.where(s == 0, torch.ones_like(s), s).to(dtype)

    # --- fitting (used by the training stack to initialise new models) -------------------------------------
    def start_fit_(self) -> None:
        self._stats = [0.0, 0.0, 0]

    @torch.no_grad()
    def _observe(self, x: torch.Tensor, ref: torch.Tensor | None) -> None:
        if x.shape[0] == 0:
            return
        n = x.shape[0]
        self._stats[1] += float(torch.var(x, dim=0).mean()) * n if n > 1 else 0.0
        self._stats[0] += (float(torch.var(ref, dim=0).mean()) * n if ref is not None and ref.shape[0] > 1 else n)
        self._stats[2] += n

    def finish_fit_(self) -> float:
        var_in, var_out, n = self._stats
        self._stats = None
        value = 1.0
        if n and var_out > 0 and var_in > 0:
            value = math.sqrt(var_in / var_out)
        self.scale_factor.fill_(value)
        return value


def head_mlp(width: int, num_mlps: int, act: str) -> nn.Sequential:
    """JMP's output MLP: ``num_mlps - 1`` times (Linear(width, width) + activation), then Linear(width, 1, no bias).

    Indices of the linear layers are 0, 2, 4, ... as in the released checkpoints.
    """
    layers: list[nn.Module] = []
    for _ in range(num_mlps - 1):
        lin = nn.Linear(width, width, bias=True)
        he_orthogonal_(lin.weight)
        nn.init.zeros_(lin.bias)
        layers += [lin, activation(act)]
    last = nn.Linear(width, 1, bias=False)
    he_orthogonal_(last.weight)
    layers.append(last)
    return nn.Sequential(*layers)
