"""A model plus everything needed to turn structures into energies, forces and stress in eV units.

:class:`Potential` owns the head choice, graph settings, precision and device; the ASE calculator is a thin shell
around it, and batched simulation helpers call :meth:`Potential.predict` directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings

import numpy as np
import torch

from .config import GraphConfig, HeadConfig
from .errors import InputError
from .graph.batch import GraphBatch
from .graph.structures import as_structure, batch_structures, build_graphs
from .model.jmp import JMPModel

__all__ = ["Potential", "InputError", "resolve_device", "resolve_dtype", "differentiable_geometry",
           "atom_ref_table"]


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


def atom_ref_table(refs: dict[int, float], num_elements: int, dtype=torch.float64) -> torch.Tensor:
    """Per-element reference energies (eV) as a table indexed by atomic number (zeros for other elements)."""
    table = torch.zeros(num_elements + 1, dtype=dtype)
    for z, e in refs.items():
        if 0 < z <= num_elements:
            table[z] = e
    return table


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


class Potential:
    """Energies (eV), forces (eV/A) and stress (eV/A^3, ASE sign) from one head of a :class:`JMPModel`.

    ``forces``: ``"direct"`` uses the head's force MLP; ``"conservative"`` uses -dE/dx (and allows stress);
    ``"auto"`` picks what the model card says the head was trained for (direct for JMP pre-training heads).
    ``cutoff``/``max_neighbors`` override the head's graph settings (the model then sees graphs unlike training).
    """

    def __init__(self, model: JMPModel, *, head: str | int | None = None, forces: str = "auto",
                 dtype="float32", device="auto", cutoff: float | None = None, max_neighbors: int | None = None,
                 deterministic: bool = False):
        self.device = resolve_device(device)
        #: bit-identical repeated results: deterministic torch kernels during predictions (CUDA scatter-adds are
        #: otherwise order-dependent; the CPU path is deterministic anyway)
        self.deterministic = deterministic
        if deterministic and self.device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        self.dtype = resolve_dtype(dtype)
        card = model.card
        if head is None:
            head = 0 if card.default_head is None else card.default_head
        self.head_idx = model.head_index(head)
        self.head: HeadConfig = model.heads[self.head_idx]
        if forces == "auto":
            forces = card.forces.get(self.head.name) or ("direct" if self.head.direct_forces else "conservative")
        if forces not in ("direct", "conservative"):
            raise InputError(f"forces must be 'auto', 'direct' or 'conservative', got {forces!r}")
        if forces == "direct" and not self.head.direct_forces:
            raise InputError(f"head {self.head.name!r} has no direct-force output; use forces='conservative'")
        self.forces = forces
        overrides = {k: v for k, v in (("cutoff", cutoff), ("max_neighbors", max_neighbors)) if v is not None}
        self.graph: GraphConfig = dataclasses.replace(self.head.graph, **overrides)  # keeps explicit caps
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.num_elements = model.config.num_elements
        #: elements the model saw in training (from its card); others give a warning
        self.elements = set(card.elements)
        refs = self.head.atom_refs
        self._atom_refs = atom_ref_table(refs, self.num_elements).to(self.device) if refs else None
        #: (state keys, GraphBatch) of the last batch, reused for an identical list of structures
        self._graph_cache = None
        #: how many calls reused the previous call's graphs (see :meth:`batch`)
        self.graph_reuses = 0

    @property
    def implemented_properties(self) -> list[str]:
        props = ["energy", "free_energy", "forces", "energies"]
        return props + (["stress"] if self.forces == "conservative" else [])

    # ------------------------------------------------------------------ graphs
    def check(self, s) -> None:
        """Raise :class:`InputError` for a structure that cannot be evaluated (see :mod:`jmp_calc.validate`)."""
        from .validate import check_structure

        check_structure(s, self.num_elements, self.elements)

    def build_graphs(self, structures) -> list:
        out = []
        for obj in structures:
            s = as_structure(obj)
            self.check(s)
            out.append(build_graphs(s, self.graph, self.model.config.qint_tags, self.head.set_tags_to))
        return out

    def batch(self, structures, graphs=None) -> GraphBatch:
        """The :class:`GraphBatch` of ``structures``; the previous call's batch is reused when every structure is
        identical (numbers, positions, cell, pbc, tags), e.g. when a property of the same state is asked again.

        Not done, on purpose: reusing graphs when only positions moved. A Verlet-skin neighbour list would save
        only the neighbour search (under 1 % of a call) and is not exact under JMP's k-NN caps; reusing the
        collated index sets when the four edge sets are unchanged is exact but was measured to pay off rarely (the
        all-pairs ``a2a`` graph changes whenever any pair crosses the cutoff: 17 of 30 NVE steps of 32 Cu atoms at
        300 K kept their graphs, 2 of 30 with 108 atoms) for at most the 5-9 % that graph building takes.
        """
        structs = [as_structure(s) for s in structures]
        keys = [_StateKey(s) for s in structs]
        cached = self._graph_cache
        if graphs is None and cached is not None and cached[0] == keys:
            self.graph_reuses += 1
            return cached[1]
        if graphs is None:
            graphs = self.build_graphs(structs)
        if any(g.truncated and g.kth_gap < 1e-4 for g in graphs):
            warnings.warn("two neighbours tie at the max_neighbors cut: the k-NN graph (and energy) is "
                          "discontinuous here", RuntimeWarning, stacklevel=3)
        g = batch_structures(structs, self.graph, self.model.config.qint_tags, dtype=self.dtype,
                             device=self.device, graphs=graphs)
        self._graph_cache = (keys, g)
        return g

    # ------------------------------------------------------------------ predictions
    def predict(self, structures, properties=("energy", "forces"), graphs=None) -> list[dict]:
        """One model call for all ``structures``; returns one dict of numpy results per structure."""
        structures = list(structures)
        if not structures:
            return []
        props = set(properties)
        if "stress" in props and self.forces != "conservative":
            raise InputError("stress needs conservative forces: create the calculator with forces='conservative'")
        g = self.batch(structures, graphs)
        if self.deterministic:
            previous = torch.are_deterministic_algorithms_enabled()
            torch.use_deterministic_algorithms(True)
            try:
                return self._predict(g, props)
            finally:
                torch.use_deterministic_algorithms(previous)
        return self._predict(g, props)

    def _predict(self, g: GraphBatch, props: set) -> list[dict]:
        return self._split(g, self.predict_tensors(g, props))

    def predict_tensors(self, g: GraphBatch, props) -> dict[str, torch.Tensor]:
        """Model outputs of a built :class:`GraphBatch` as detached tensors on the model's device, in eV units:
        ``energy`` (B,), ``energies`` (N,), ``forces`` (N, 3), ``stress`` (B, 3, 3) (ASE sign) as requested."""
        props = set(props)
        want_grad = self.forces == "conservative" and ("forces" in props or "stress" in props)
        stress = "stress" in props
        with torch.inference_mode(not want_grad), torch.enable_grad() if want_grad else contextlib.nullcontext():
            pos_leaf, eps, pos, cell = differentiable_geometry(g, positions=want_grad, strain=stress)
            out = self.model(g, heads=[self.head_idx], pos=pos, cell=cell, return_features=True,
                             direct_forces=self.forces == "direct" and "forces" in props)
            std, mean = self.head.energy_std, self.head.energy_mean
            energy = out["energy"][:, 0] * std + mean
            node_e = out["node_energy"][:, 0] * std
            if self.head.reduction == "mean":
                node_e = node_e / g.natoms[g.batch]
            node_e = node_e + mean / g.natoms[g.batch]
            if self._atom_refs is not None:
                ref = self._atom_refs[g.numbers].to(self.dtype)
                node_e = node_e + ref
                energy = energy + ref.new_zeros(g.num_structures).index_add_(0, g.batch, ref)
            result = {"energy": energy.detach(), "energies": node_e.detach()}
            if want_grad:
                grads = torch.autograd.grad(energy.sum(), [pos_leaf] + ([eps] if stress else []))
                if "forces" in props:
                    result["forces"] = -grads[0]
                if stress:
                    vol = torch.abs(torch.linalg.det(g.cell))
                    result["stress"] = grads[1] / vol[:, None, None]
            elif "forces" in props:
                result["forces"] = out["forces"][:, :, 0].detach() * self.head.force_std
        return result

    def predict_many(self, structures, *, batch_size: int | None = None, max_atoms: int | None = None,
                     max_edges: int | None = None, properties=("energy", "forces"), progress: bool | None = None
                     ) -> list[dict]:
        """Predictions for many structures of mixed sizes, one model call per batch: ``list(iter_predict(...))``.

        Batches are consecutive structures bounded by ``batch_size`` structures, ``max_atoms`` atoms and
        ``max_edges`` main-graph edges (defaults: 4,000 atoms / 120,000 edges on CPU, 10x that on GPU), so memory
        stays bounded however long the list; graphs are built batch by batch. A progress bar is shown for long
        lists (``progress=None``: more than 200 structures).
        """
        return list(self.iter_predict(structures, batch_size=batch_size, max_atoms=max_atoms, max_edges=max_edges,
                                      properties=properties, progress=progress))

    def iter_predict(self, structures, *, batch_size: int | None = None, max_atoms: int | None = None,
                     max_edges: int | None = None, properties=("energy", "forces"), progress: bool | None = None):
        """Like :meth:`predict_many`, lazily: ``structures`` may be any iterable (a generator reading a file), a
        batch is read from it only when the previous batch's results have been consumed, and one dict per
        structure is yielded in input order. Memory is that of one batch, whatever the number of structures."""
        max_atoms, max_edges = self.batch_limits(max_atoms, max_edges)
        bar = progress_bar(structures, progress)
        chunk, graphs, n_atoms, n_edges = [], [], 0, 0
        try:
            for obj in structures:
                s = as_structure(obj)
                (g,) = self.build_graphs([s])
                if chunk and ((batch_size is not None and len(chunk) >= batch_size) or
                              n_atoms + g.n_atoms > max_atoms or n_edges + len(g.main) > max_edges):
                    yield from self.predict(chunk, properties=properties, graphs=graphs)
                    bar.update(len(chunk))
                    chunk, graphs, n_atoms, n_edges = [], [], 0, 0
                chunk.append(s)
                graphs.append(g)
                n_atoms += g.n_atoms
                n_edges += len(g.main)
            if chunk:
                yield from self.predict(chunk, properties=properties, graphs=graphs)
                bar.update(len(chunk))
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
                d["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
            out.append(d)
        return out
