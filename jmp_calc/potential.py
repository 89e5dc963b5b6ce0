"""A model plus everything needed to turn structures into energies, forces and stress in eV units.

:class:`Potential` owns the head choice (a selector from :mod:`jmp_calc.routing`: one fixed head, or the model
card's rules per structure), graph settings, precision and device; the ASE calculator is a thin shell around it,
and the batched simulation helpers, the torch-sim model and :func:`jmp_calc.embed` call it directly.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os

import numpy as np
import torch
from ase.stress import full_3x3_to_voigt_6_stress

from .config import GraphConfig, HeadConfig
from .errors import InputError
from .graph.batch import GraphBatch
from .graph.structures import as_structure, batch_structures, build_graphs
from .model.jmp import JMPModel
from .units import HeadUnits

__all__ = ["Potential", "HeadSettings", "InputError", "resolve_device", "resolve_dtype", "differentiable_geometry"]


def resolve_device(device) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"invalid device {device!r}: {exc}; use 'auto', 'cpu' or 'cuda[:N]'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available; use device='cpu' or 'auto'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"device {device!r} requested but this machine has {torch.cuda.device_count()} CUDA "
                         f"device(s) (cuda:0..cuda:{torch.cuda.device_count() - 1})")
    if dev.type == "meta":
        raise InputError("device 'meta' holds no data and cannot evaluate a model; use 'auto', 'cpu' or 'cuda[:N]'")
    # a device type torch knows but this build or machine lacks (mps, xla, xpu, ...) would otherwise fail deep
    # inside Module.to() or at the first kernel
    try:
        torch.empty(1, device=dev)
    except Exception as exc:  # noqa: BLE001 (torch raises RuntimeError, AssertionError, ImportError, ...)
        why = (str(exc).splitlines() or [""])[0]
        why = f" ({why})" if 0 < len(why) <= 100 else ""
        raise InputError(f"device {device!r} is not available in this PyTorch build or on this machine{why}; use "
                         "'auto', 'cpu' or 'cuda[:N]'") from None
    return dev


def resolve_dtype(dtype) -> torch.dtype:
    table = {"float32": torch.float32, "float64": torch.float64, torch.float32: torch.float32,
             torch.float64: torch.float64, "fp32": torch.float32, "fp64": torch.float64}
    if dtype not in table:
        raise InputError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return table[dtype]


def differentiable_geometry(g: GraphBatch, *, positions: bool, strain: bool):
    """Positions (and a zero symmetric strain applied to positions and cell) to differentiate the energy by.

    Returns ``(pos_leaf, eps, pos, cell)``: forces = -dE/d(pos_leaf), stress = dE/d(eps) / volume (ASE sign);
    ``eps`` is None without ``strain``. Shared by the calculator and the trainers.
    """
    pos_leaf, cell = g.pos, g.cell
    if positions:
        pos_leaf = pos_leaf.clone().requires_grad_(True)
    pos, eps = pos_leaf, None
    if strain:
        eps = torch.zeros((g.num_structures, 3, 3), dtype=pos.dtype, device=pos.device, requires_grad=True)
        sym = 0.5 * (eps + eps.transpose(1, 2))
        pos = pos + torch.bmm(pos.unsqueeze(1), sym[g.batch]).squeeze(1)
        cell = cell + torch.bmm(cell, sym)
    return pos_leaf, eps, pos, cell


class _StateKey:
    """Copies of one structure's arrays (the graph cache must not see later in-place changes)."""

    def __init__(self, s):
        self.arrays = tuple(np.array(x) for x in (s.numbers, s.positions, s.cell, s.pbc, s.tags))

    def __eq__(self, other) -> bool:
        return all(np.array_equal(a, b) for a, b in zip(self.arrays, other.arrays))


def progress_bar(structures, progress: bool | None):
    """The tqdm bar of :meth:`Potential.iter_predict` over ``structures`` (any iterable; generators have no total).
    ``progress=None``: shown for more than 200 structures."""
    from tqdm import tqdm

    try:
        total = len(structures)
    except TypeError:  # a generator
        total = None
    show = progress if progress is not None else (total or 0) > 200
    return tqdm(total=total, desc="predict_many", unit="struct", disable=not show)


def formula(s) -> str:
    """Chemical formula of a :class:`~jmp_calc.graph.structures.Structure` (for messages)."""
    from ase.symbols import Symbols

    try:
        return Symbols(np.asarray(s.numbers, dtype=np.int64)).get_chemical_formula()
    except (KeyError, IndexError, ValueError):  # numbers outside the periodic table
        return f"{len(s.numbers)} atoms"


def error_record(index: int, exc: BaseException) -> dict:
    """The result slot of a structure that could not be evaluated (``on_error="skip"``)."""
    reason = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
    return {"error": reason, "index": index}


def nonfinite(result: dict, *, stress: bool = False) -> str | None:
    """Why a prediction is unusable (NaN/inf energy or forces, and stress when ``stress``: pass it for structures
    periodic in 3 directions; elsewhere stress is not defined, NaN, and the calculator drops it), or None."""
    keys = ("energy", "forces", "stress") if stress else ("energy", "forces")
    bad = [k for k in keys if k in result and not np.all(np.isfinite(result[k]))]
    return f"the model gave non-finite {'/'.join(bad)}" if bad else None


#: a gap (A) between the k-th and (k+1)-th neighbour at a k-NN cap below this is a tie: two neighbours at the same
#: distance (a symmetric structure: a perfect crystal or slab with a cap inside a shell), where which one is kept
#: is arbitrary and the energy jumps under an infinitesimal displacement. Ordinary (rattled, relaxed, MD) structures
#: have near-ties (gaps of 1e-5 A happen) but no discontinuity there; they are not warned about.
TIE_GAP = 1e-6

#: what a structure that cannot be evaluated raises (as_structure: TypeError/KeyError for things that are no
#: structure; the checks and graph code: InputError / ValueError)
STRUCTURE_ERRORS = (ValueError, TypeError, KeyError)


@dataclasses.dataclass(frozen=True)
class HeadSettings:
    """How one head is evaluated: its config and index in the model, force kind, graph settings (with the
    potential's overrides) and its conversion of model units to eV (on the model's device, in its dtype)."""

    head: HeadConfig
    index: int
    forces: str
    graph: GraphConfig
    units: HeadUnits

    @property
    def name(self) -> str:
        return self.head.name


@dataclasses.dataclass
class _Entry:
    """One structure on its way through :meth:`Potential.iter_predict`."""

    index: int
    structure: object
    settings: HeadSettings
    graphs: object


def _prepared(model: JMPModel, device: torch.device, dtype: torch.dtype) -> JMPModel:
    """``model`` in eval mode, without parameter gradients, on ``device`` in ``dtype``: the model itself when it
    already is, else a copy (the caller's model is never moved, cast or frozen)."""
    def index(d: torch.device) -> int:  # "cuda" means the current CUDA device
        return d.index if d.index is not None else (torch.cuda.current_device() if d.type == "cuda" else 0)

    params = list(model.parameters()) + list(model.buffers())
    ready = not model.training and not any(p.requires_grad for p in model.parameters()) and \
        all(p.device.type == device.type and index(p.device) == index(device) and
            (p.dtype == dtype or not p.is_floating_point()) for p in params)
    if ready:
        return model
    model = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class Potential:
    """Energies (eV), forces (eV/A) and stress (eV/A^3, ASE sign) from a :class:`JMPModel`, with the head chosen by
    a selector (:mod:`jmp_calc.routing`): ``head=`` (name or index) for one fixed head; ``head=None`` or
    ``"auto"``: the card's ``head_rules`` per structure when it has them, else the card's default head.

    ``forces``: ``"direct"`` uses the head's force MLP; ``"conservative"`` uses -dE/dx (and allows stress);
    ``"auto"`` picks, per head, what the model card says the head was trained for (direct for JMP pre-training
    heads). ``cutoff``/``max_neighbors`` override the heads' graph settings (the model then sees graphs unlike
    training).

    The model given is never changed: when it is not already in eval mode, frozen, on ``device`` and in ``dtype``,
    the potential works on a copy (:attr:`model`). Calls share no state beyond a cache of the last batch's graphs
    (reused only for identical structures, see :meth:`batch`).

    ``compile=True`` (or a :class:`~jmp_calc.compile.CompileOptions`) runs the model's forward through
    ``torch.compile`` with dynamic shapes (:mod:`jmp_calc.compile`): the first call compiles (logged, and kept in
    ``self.compiled.compile_times``; experimental: one compilation across changing sizes is not yet shown, and
    energy + forces + stress does not compile yet); if compiling fails the potential warns once and stays eager.
    """

    def __init__(self, model: JMPModel, *, head: str | int | None = None, forces: str = "auto",
                 dtype="float32", device="auto", cutoff: float | None = None, max_neighbors: int | None = None,
                 deterministic: bool = False, compile=False):
        from .compile import compile_options
        from .routing import selector_for

        self.device = resolve_device(device)
        #: bit-identical repeated results: deterministic torch kernels during predictions (CUDA scatter-adds are
        #: otherwise order-dependent; the CPU path is deterministic anyway)
        self.deterministic = deterministic
        if deterministic and self.device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        self.dtype = resolve_dtype(dtype)
        if forces not in ("auto", "direct", "conservative"):
            raise InputError(f"forces must be 'auto', 'direct' or 'conservative', got {forces!r}")
        #: chooses the head of each structure (a fixed head, or the card's head_rules)
        self.selector = selector_for(model, head)
        overrides = {k: v for k, v in (("cutoff", cutoff), ("max_neighbors", max_neighbors)) if v is not None}
        self.num_elements = model.config.num_elements
        #: settings of every head the selector can choose, by name
        self.heads: dict[str, HeadSettings] = {}
        for name in self.selector.heads:
            idx = model.head_index(name)
            cfg = model.heads[idx]
            kind = forces if forces != "auto" else (
                model.card.forces.get(name) or ("direct" if cfg.direct_forces else "conservative"))
            if kind == "direct" and not cfg.direct_forces:
                raise InputError(f"head {name!r} has no direct-force output; use forces='conservative'")
            units = HeadUnits([cfg], self.num_elements, self.dtype).to(self.device)
            self.heads[name] = HeadSettings(cfg, idx, kind, dataclasses.replace(cfg.graph, **overrides), units)
        kinds = {h.forces for h in self.heads.values()}
        #: "direct" or "conservative" (every head alike), else "mixed"
        self.forces = kinds.pop() if len(kinds) == 1 else "mixed"
        self.model = _prepared(model, self.device, self.dtype)
        if self.device.type == "cpu":
            from .allocator import tune_malloc

            tune_malloc()  # small calls otherwise page-fault their working set in again every call
        #: the compiled forward (``compile=True`` or a :class:`~jmp_calc.compile.CompileOptions`), or None: eager
        self.compiled = None
        options = compile_options(compile)
        if options is not None:
            from .compile import CompiledForward

            self.compiled = CompiledForward(self.model, options)
        #: elements the model saw in training (from its card); others give a warning
        self.elements = set(model.card.elements)
        #: (head, state keys, GraphBatch) of the last batch, reused for an identical list of structures
        self._graph_cache = None
        #: how many calls reused the previous call's graphs (see :meth:`batch`)
        self.graph_reuses = 0

    @property
    def implemented_properties(self) -> list[str]:
        props = ["energy", "free_energy", "forces", "energies"]
        return props + (["stress"] if self.forces == "conservative" else [])

    # ------------------------------------------------------------------ heads
    def route(self, structure) -> str:
        """The name of the head that evaluates ``structure``."""
        return self.selector.head_for(as_structure(structure))

    def settings_for(self, structure) -> HeadSettings:
        """The :class:`HeadSettings` that evaluate ``structure``."""
        return self.heads[self.route(structure)]

    def _single(self) -> HeadSettings:
        if len(self.heads) != 1:
            raise InputError(f"this potential chooses one of the heads {sorted(self.heads)} per structure: use "
                             "settings_for(structure), or pass head=... for one head")
        return next(iter(self.heads.values()))

    @property
    def head(self) -> HeadConfig:
        """The head's config (a potential of one fixed head; see :meth:`settings_for` otherwise)."""
        return self._single().head

    @property
    def head_idx(self) -> int:
        return self._single().index

    @property
    def graph(self) -> GraphConfig:
        return self._single().graph

    # ------------------------------------------------------------------ graphs
    def check(self, s) -> None:
        """Raise :class:`InputError` for a structure that cannot be evaluated (see :mod:`jmp_calc.validate`)."""
        from .validate import check_structure

        check_structure(s, self.num_elements, self.elements)

    def _entry(self, index: int, obj) -> _Entry:
        s = as_structure(obj)
        self.check(s)
        settings = self.settings_for(s)
        g = build_graphs(s, settings.graph, self.model.config.qint_tags, settings.head.set_tags_to)
        return _Entry(index, s, settings, g)

    def build_graphs(self, structures) -> list:
        """The graphs of each structure, with the settings of its head (checked first)."""
        return [self._entry(i, obj).graphs for i, obj in enumerate(structures)]

    def batch(self, structures, graphs=None) -> GraphBatch:
        """The :class:`GraphBatch` of ``structures`` (all of one head: see :meth:`batch_head`); the previous
        call's batch is reused when every structure is identical (numbers, positions, cell, pbc, tags), e.g. when
        a property of the same state is asked again.

        Not done, on purpose: reusing graphs when only positions moved. A Verlet-skin neighbour list would save
        only the neighbour search (under 1 % of a call) and is not exact under JMP's k-NN caps; reusing the
        collated index sets when the four edge sets are unchanged is exact but was measured to pay off rarely (the
        all-pairs ``a2a`` graph changes whenever any pair crosses the cutoff: 17 of 30 NVE steps of 32 Cu atoms at
        300 K kept their graphs, 2 of 30 with 108 atoms) for at most the 5-9 % that graph building takes.
        """
        structs = [as_structure(s) for s in structures]
        settings = self.batch_head(structs)
        if graphs is None:
            entries = [_Entry(i, s, settings, None) for i, s in enumerate(structs)]
        else:
            entries = [_Entry(i, s, settings, g) for i, (s, g) in enumerate(zip(structs, graphs))]
        return self._batch(entries)

    def batch_head(self, structures) -> HeadSettings:
        """The head of a batch of structures: an :class:`InputError` when they need different heads."""
        names = {self.route(s) for s in structures}
        if len(names) > 1:
            raise InputError(f"this batch mixes structures for heads {sorted(names)}; evaluate them separately or "
                             "pass head=... to use one head for all")
        return self.heads[names.pop()] if names else self._single()

    def _batch(self, entries: list[_Entry]) -> GraphBatch:
        """Collated graphs of ``entries`` (one head); graphs are built for entries that have none."""
        from .validate import warn_user

        settings = entries[0].settings
        keys = [_StateKey(e.structure) for e in entries]
        cached = self._graph_cache
        if all(e.graphs is None for e in entries) and cached is not None and cached[0] == settings.name and \
                cached[1] == keys:
            self.graph_reuses += 1
            return cached[2]
        for e in entries:
            if e.graphs is None:
                self.check(e.structure)
                e.graphs = build_graphs(e.structure, settings.graph, self.model.config.qint_tags,
                                        settings.head.set_tags_to)
        ties = [e for e in entries if e.graphs.truncated and e.graphs.kth_gap < TIE_GAP]
        if ties:
            which = ", ".join(f"{e.index} ({formula(e.structure)})" for e in ties[:5])
            warn_user(f"structure{'s' if len(ties) > 1 else ''} {which}{', ...' if len(ties) > 5 else ''}: two "
                      f"neighbours tie at the max_neighbors cut ({settings.graph.max_neighbors}) of head "
                      f"{settings.name!r}, so the k-NN graph (and the energy) is discontinuous there; a slightly "
                      "perturbed structure (or a larger max_neighbors) avoids the tie", RuntimeWarning)
        g = batch_structures([e.structure for e in entries], settings.graph, self.model.config.qint_tags,
                             dtype=self.dtype, device=self.device, graphs=[e.graphs for e in entries])
        self._graph_cache = (settings.name, keys, g)
        return g

    # ------------------------------------------------------------------ predictions
    def predict(self, structures, properties=("energy", "forces"), graphs=None) -> list[dict]:
        """Every structure of ``structures`` in one model call per head; one dict of numpy results per structure,
        in input order. ``graphs``: prebuilt graphs (from :meth:`build_graphs`), one per structure."""
        structures = [as_structure(s) for s in structures]
        graphs = [None] * len(structures) if graphs is None else list(graphs)
        entries = [_Entry(i, s, self.settings_for(s), g) for i, (s, g) in enumerate(zip(structures, graphs))]
        return self._evaluate(entries, set(properties))

    def _evaluate(self, entries: list[_Entry], props: set) -> list[dict]:
        """Results of ``entries`` in their order: one model call per head among them."""
        if not entries:
            return []
        groups: dict[str, list[int]] = {}
        for k, e in enumerate(entries):
            groups.setdefault(e.settings.name, []).append(k)
        out: list[dict | None] = [None] * len(entries)
        previous = torch.are_deterministic_algorithms_enabled()
        if self.deterministic:
            torch.use_deterministic_algorithms(True)
        try:
            for name, idx in groups.items():
                settings = self.heads[name]
                if "stress" in props and settings.forces != "conservative":
                    raise InputError("stress needs conservative forces: create the calculator with "
                                     "forces='conservative'")
                g = self._batch([entries[k] for k in idx])
                for k, r in zip(idx, self._split(g, self.predict_tensors(g, props, head=settings))):
                    out[k] = r
        finally:
            if self.deterministic:
                torch.use_deterministic_algorithms(previous)
        return out

    def predict_tensors(self, g: GraphBatch, props, head: str | HeadSettings | None = None
                        ) -> dict[str, torch.Tensor]:
        """Model outputs of a built :class:`GraphBatch` as detached tensors on the model's device, in eV units:
        ``energy`` (B,), ``energies`` (N,), ``forces`` (N, 3), ``stress`` (B, 3, 3) (ASE sign) as requested.
        ``head``: the head that evaluates the batch (its name or :class:`HeadSettings`, e.g. from
        :meth:`batch_head`); needed when the potential chooses heads per structure."""
        settings = self._single() if head is None else head if isinstance(head, HeadSettings) else self.heads[head]
        props = set(props)
        if self.compiled is None:
            return self._predict_tensors(g, props, settings, self._eager_forward)
        return self.compiled.evaluate(lambda forward: self._predict_tensors(g, props, settings, forward), g)

    def _eager_forward(self, g, *, heads, pos, cell, direct_forces) -> dict:
        return self.model(g, heads=heads, pos=pos, cell=cell, return_features=True, direct_forces=direct_forces)

    def _predict_tensors(self, g: GraphBatch, props: set, settings: HeadSettings, forward) -> dict[str, torch.Tensor]:
        want_grad = settings.forces == "conservative" and ("forces" in props or "stress" in props)
        stress = "stress" in props
        with torch.inference_mode(not want_grad), torch.enable_grad() if want_grad else contextlib.nullcontext():
            pos_leaf, eps, pos, cell = differentiable_geometry(g, positions=want_grad, strain=stress)
            out = forward(g, heads=[settings.index], pos=pos, cell=cell,
                          direct_forces=settings.forces == "direct" and "forces" in props)
            u, head0 = settings.units, g.batch.new_zeros(g.num_structures)  # the one head of ``u``
            energy = u.energy(out["energy"][:, 0], head0, g.batch, g.numbers)
            node_e = u.node_energy(out["node_energy"][:, 0], head0, g.batch, g.numbers, g.natoms)
            result = {"energy": energy.detach(), "energies": node_e.detach()}
            if want_grad:
                grads = torch.autograd.grad(energy.sum(), [pos_leaf] + ([eps] if stress else []))
                if "forces" in props:
                    result["forces"] = -grads[0]
                if stress:
                    vol = torch.abs(torch.linalg.det(g.cell))
                    result["stress"] = grads[1] / vol[:, None, None]
            elif "forces" in props:
                result["forces"] = u.forces(out["forces"][:, :, 0].detach(), head0, g.batch)
        return result

    def predict_many(self, structures, *, batch_size: int | None = None, max_atoms: int | None = None,
                     max_edges: int | None = None, properties=("energy", "forces"), progress: bool | None = None,
                     on_error: str = "raise") -> list[dict]:
        """Predictions for many structures of mixed sizes, one model call per batch (and head): ``list(
        iter_predict(...))``.

        Batches are consecutive structures bounded by ``batch_size`` structures, ``max_atoms`` atoms and
        ``max_edges`` main-graph edges (defaults: 4,000 atoms / 120,000 edges on CPU, 10x that on GPU), so memory
        stays bounded however long the list; graphs are built batch by batch. A progress bar is shown for long
        lists (``progress=None``: more than 200 structures).

        ``on_error="skip"``: a structure that cannot be evaluated (it fails the input checks, or the model gives
        NaN/inf for it) keeps its slot as ``{"error": reason, "index": i}`` and every other result is
        bit-identical to a run without that structure; ``"raise"`` (default): the first such structure raises
        :class:`InputError`.
        """
        return list(self.iter_predict(structures, batch_size=batch_size, max_atoms=max_atoms, max_edges=max_edges,
                                      properties=properties, progress=progress, on_error=on_error))

    def iter_predict(self, structures, *, batch_size: int | None = None, max_atoms: int | None = None,
                     max_edges: int | None = None, properties=("energy", "forces"), progress: bool | None = None,
                     on_error: str = "raise"):
        """Like :meth:`predict_many`, lazily: ``structures`` may be any iterable (a generator reading a file), a
        batch is read from it only when the previous batch's results have been consumed, and one dict per
        structure is yielded in input order. Memory is that of one batch, whatever the number of structures.

        The one batching loop of the package: a batch holds structures of any head and is evaluated with one
        model call per head in it. With ``on_error="skip"`` a structure whose results are not finite is dropped
        from its batch, which is then filled up and evaluated again, so the batches of the others are exactly
        those of a run without it."""
        if on_error not in ("raise", "skip"):
            raise InputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        skip = on_error == "skip"
        props = set(properties)
        max_atoms, max_edges = self.batch_limits(max_atoms, max_edges)
        bar = progress_bar(structures, progress)
        ready: dict[int, dict] = {}  # finished results waiting for earlier ones
        state = {"next": 0}

        def flush():
            while state["next"] in ready:
                yield ready.pop(state["next"])
                state["next"] += 1

        def entries():
            for i, obj in enumerate(structures):
                try:
                    yield self._entry(i, obj)
                except STRUCTURE_ERRORS as exc:
                    if not skip:
                        raise
                    ready[i] = error_record(i, exc)

        source, pending = entries(), []
        chunk, n_atoms, n_edges = [], 0, 0
        try:
            while True:
                e = pending.pop() if pending else next(source, None)
                full = e is not None and chunk and (
                    (batch_size is not None and len(chunk) >= batch_size) or
                    n_atoms + e.graphs.n_atoms > max_atoms or n_edges + len(e.graphs.main) > max_edges)
                if (e is None or full) and chunk:
                    results = self._evaluate(chunk, props)
                    bad = [(x, why) for x, r in zip(chunk, results)
                           if (why := nonfinite(r, stress=bool(np.all(x.structure.pbc))))]
                    if bad:
                        if not skip:
                            x, why = bad[0]
                            raise InputError(f"structure {x.index} ({formula(x.structure)}): {why}")
                        for x, why in bad:
                            ready[x.index] = {"error": why, "index": x.index}
                        chunk = [x for x in chunk if all(x is not y for y, _ in bad)]
                        n_atoms = sum(x.graphs.n_atoms for x in chunk)
                        n_edges = sum(len(x.graphs.main) for x in chunk)
                        if e is not None:
                            pending.append(e)
                        continue  # fill the freed room and evaluate again: the batch a run without them has
                    for x, r in zip(chunk, results):
                        ready[x.index] = r
                    bar.update(len(chunk))
                    chunk, n_atoms, n_edges = [], 0, 0
                yield from flush()
                if e is None:
                    break
                chunk.append(e)
                n_atoms += e.graphs.n_atoms
                n_edges += len(e.graphs.main)
            yield from flush()
        finally:
            bar.close()

    def batch_limits(self, max_atoms: int | None = None, max_edges: int | None = None) -> tuple[int, int]:
        """``max_atoms`` / ``max_edges`` of a batch, defaulting to 4,000 atoms / 120,000 edges (CPU), 10x on GPU."""
        gpu = self.device.type == "cuda"
        return max_atoms or (40_000 if gpu else 4_000), max_edges or (1_200_000 if gpu else 120_000)

    def _split(self, g: GraphBatch, result: dict) -> list[dict]:
        counts = g.natoms.tolist()
        per_atom = {k: torch.split(v.cpu().double(), counts) for k, v in result.items() if k in ("forces", "energies")}
        out = []
        for i in range(g.num_structures):
            d = {"energy": float(result["energy"][i]), "free_energy": float(result["energy"][i])}
            for k, parts in per_atom.items():
                d[k] = parts[i].numpy()
            if "stress" in result:
                s = result["stress"][i].cpu().double().numpy()
                d["stress"] = full_3x3_to_voigt_6_stress(s)
            out.append(d)
        return out
