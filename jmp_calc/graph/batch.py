"""Batching many structures into one disjoint graph: :class:`GraphBatch` is the only input of the model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from .indices import Quadruplets, Triplets, inner_index, pad_table, quadruplets, reverse_edges, triplets
from .rules import Edges, StructureGraphs

__all__ = ["EdgeSet", "GraphBatch", "collate"]


@dataclass
class EdgeSet:
    """One graph of a batch: ``index`` (2, E) = [src, dst], integer image ``offset`` (E, 3), ``kmax`` the largest
    in-degree, ``pad`` (N, kmax) the edges ending at each atom (sentinel E) and ``pad_src`` their source atoms
    (sentinel N), used to fill zero-padded per-atom neighbour tensors with a single gather."""

    index: torch.Tensor
    offset: torch.Tensor
    kmax: int
    pad: torch.Tensor
    pad_src: torch.Tensor

    @property
    def num_edges(self) -> int:
        return int(self.index.shape[1])


def _tensors_to(obj, device):
    changes = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, torch.Tensor):
            changes[f.name] = v.to(device, non_blocking=True)
        elif dataclasses.is_dataclass(v):
            changes[f.name] = _tensors_to(v, device)
    return dataclasses.replace(obj, **changes)


@dataclass
class GraphBatch:
    """Atoms of several structures and their four graphs with every index set GemNet-OC needs.

    ``pos`` (N, 3) A, ``numbers`` (N,), ``batch`` (N,) structure of each atom, ``cell`` (B, 3, 3) rows = lattice
    vectors, ``natoms`` (B,). Index sets are numpy-built and stored as int64 tensors on the batch's device.
    """

    pos: torch.Tensor
    numbers: torch.Tensor
    batch: torch.Tensor
    cell: torch.Tensor
    natoms: torch.Tensor
    main: EdgeSet
    a2ee2a: EdgeSet
    qint: EdgeSet
    a2a: EdgeSet
    id_swap: torch.Tensor
    trip_e2e: Triplets
    trip_a2e: Triplets
    trip_e2a: Triplets
    quad: Quadruplets

    @property
    def num_structures(self) -> int:
        return int(self.natoms.shape[0])

    def to(self, device=None, dtype: torch.dtype | None = None) -> GraphBatch:
        out = _tensors_to(self, device) if device is not None else self
        if dtype is not None:
            out = dataclasses.replace(out, pos=out.pos.to(dtype), cell=out.cell.to(dtype))
        return out


def _cat_edges(graphs: list[Edges], atom_offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    src = np.concatenate([g.src + o for g, o in zip(graphs, atom_offsets)]) if graphs else np.zeros(0, np.int64)
    dst = np.concatenate([g.dst + o for g, o in zip(graphs, atom_offsets)]) if graphs else np.zeros(0, np.int64)
    off = np.concatenate([g.offset for g in graphs]) if graphs else np.zeros((0, 3), np.int64)
    return src.astype(np.int64), dst.astype(np.int64), off.reshape(-1, 3).astype(np.int64)


def _as_long(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64))


def _to_torch(obj):
    return dataclasses.replace(obj, **{f.name: _as_long(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                                       if isinstance(getattr(obj, f.name), np.ndarray)})


def collate(structures: list[StructureGraphs], positions: list[np.ndarray], numbers: list[np.ndarray],
            cells: list[np.ndarray], dtype: torch.dtype = torch.float32, device=None) -> GraphBatch:
    """Concatenate per-structure graphs (disjoint union) and build the batch-level index sets."""
    natoms = np.array([s.n_atoms for s in structures], dtype=np.int64)
    atom_offsets = np.cumsum(natoms) - natoms
    n_total = int(natoms.sum())

    sets = {}
    raw = {}
    for name in ("main", "a2ee2a", "qint", "a2a"):
        src, dst, off = _cat_edges([getattr(s, name) for s in structures], atom_offsets)
        inner, kmax = inner_index(dst, n_total)
        pad = pad_table(dst, inner, n_total, kmax, np.arange(len(dst), dtype=np.int64), len(dst))
        raw[name] = (src, dst, off)
        sets[name] = EdgeSet(_as_long(np.stack([src, dst])), _as_long(off), kmax, _as_long(pad),
                             _as_long(np.append(src, n_total)[pad]))

    ms, md, mo = raw["main"]
    a_s, a_d, a_o = raw["a2ee2a"]
    qs, qd, qo = raw["qint"]
    q = quadruplets(ms, md, mo, qs, qd, qo, n_total)
    batch = GraphBatch(
        pos=torch.as_tensor(np.concatenate(positions).reshape(-1, 3), dtype=dtype),
        numbers=_as_long(np.concatenate(numbers)),
        batch=_as_long(np.repeat(np.arange(len(structures)), natoms)),
        cell=torch.as_tensor(np.stack(cells).reshape(-1, 3, 3), dtype=dtype),
        natoms=_as_long(natoms),
        main=sets["main"], a2ee2a=sets["a2ee2a"], qint=sets["qint"], a2a=sets["a2a"],
        id_swap=_as_long(reverse_edges(ms, md, mo, n_total)),
        trip_e2e=_to_torch(triplets(ms, md, mo, ms, md, mo, n_total)),
        trip_a2e=_to_torch(triplets(a_s, a_d, a_o, ms, md, mo, n_total)),
        trip_e2a=_to_torch(triplets(ms, md, mo, a_s, a_d, a_o, n_total)),
        quad=_to_torch(q),
    )
    return batch.to(device) if device is not None else batch
