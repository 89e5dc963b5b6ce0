"""Batching many structures into one disjoint graph: :class:`GraphBatch` is the only input of the model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from .indices import Quadruplets, Triplets, group_table, quadruplets, reverse_edges, triplets
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
    #: position of each edge in the batch's :attr:`GraphBatch.geo_index` (None: the same edges in the same order)
    geo: torch.Tensor | None = None

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
    vectors, ``natoms`` (B,). Index sets are numpy-built and stored as int64 tensors on the batch's device, except
    the quadruplets' (:attr:`quad`, by far the largest), which are int32 (int64 only beyond 2**31 entries).
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
    #: every distinct edge of the four graphs, [src, dst] (2, U) and image offset (U, 3): the a2a edges first, in
    #: order, then any edge of another graph that a2a lacks. The model computes distances and unit vectors once
    #: for these and selects each graph's by :attr:`EdgeSet.geo`. None: per-graph geometry (older batches).
    geo_index: torch.Tensor | None = None
    geo_offset: torch.Tensor | None = None

    @property
    def num_structures(self) -> int:
        return int(self.natoms.shape[0])

    @property
    def padded_slots(self) -> int:
        """Slots of the largest padded index table (the quadruplet grid, or a triplet set's): the size by which
        the model decides whether a call recomputes its activations in backward
        (:data:`~jmp_calc.model.layers.RECOMPUTE_MIN_SLOTS`)."""
        return max(self.quad.keep.numel(), self.trip_e2e.pad_in.numel(), self.trip_a2e.pad_in.numel(),
                   self.trip_e2a.pad_in.numel())

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


def _edge_ids(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], n_atoms: int) -> list[np.ndarray]:
    """One int64 id per edge (src, dst, image), equal iff the edges are equal, for several edge lists at once."""
    sizes = [len(p[0]) for p in parts]
    src = np.concatenate([p[0] for p in parts])
    dst = np.concatenate([p[1] for p in parts])
    off = np.concatenate([p[2] for p in parts]).reshape(-1, 3)
    r = int(np.abs(off).max()) if off.size else 0
    base = 2 * r + 1
    if float(max(n_atoms, 1)) ** 2 * float(base) ** 3 < 2.0**62:
        o = off + r
        ids = ((dst * n_atoms + src) * base + o[:, 0]) * base * base + o[:, 1] * base + o[:, 2]
    else:  # huge batches or image offsets: ids from the distinct rows (slower, same result)
        rows = np.concatenate([src[:, None], dst[:, None], off], axis=1)
        ids = np.unique(rows, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)
    return np.split(ids, np.cumsum(sizes)[:-1])


def geometry_index(raw: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], n_atoms: int):
    """The union of the four graphs' edges (a2a first, then edges a2a lacks) and each graph's position in it
    (None for a2a itself). ``raw``: name -> (src, dst, offset)."""
    names = ("a2a", "main", "a2ee2a", "qint")
    ids = dict(zip(names, _edge_ids([raw[n] for n in names], n_atoms)))
    base_ids = ids["a2a"]
    order = np.argsort(base_ids, kind="stable")
    sorted_ids = base_ids[order]

    def lookup(keys, sorted_keys, perm):
        pos = np.minimum(np.searchsorted(sorted_keys, keys), max(len(sorted_keys) - 1, 0))
        found = sorted_keys[pos] == keys if len(sorted_keys) else np.zeros(len(keys), bool)
        return perm[pos] if len(perm) else np.zeros(len(keys), np.int64), found

    maps, missing = {"a2a": None}, []
    for n in names[1:]:
        m, found = lookup(ids[n], sorted_ids, order)
        maps[n] = (m, found)
        missing.append((n, ids[n][~found], np.nonzero(~found)[0]))
    extra_ids, first = np.unique(np.concatenate([k for _, k, _ in missing]), return_index=True)
    src, dst, off = (x.copy() for x in raw["a2a"])
    if len(extra_ids):
        # the rows of the extra edges, taken from the graphs they came from
        rows = np.concatenate([np.stack([raw[n][0][i], raw[n][1][i]], 1) for n, _, i in missing])[first]
        offs = np.concatenate([raw[n][2][i] for n, _, i in missing])[first]
        src, dst = np.concatenate([src, rows[:, 0]]), np.concatenate([dst, rows[:, 1]])
        off = np.concatenate([off, offs])
    out = {"a2a": None}
    for n, keys, where in missing:
        m, found = maps[n]
        m = m.copy()
        if len(where):
            m[where] = len(base_ids) + np.searchsorted(extra_ids, keys)
        out[n] = m
    return np.stack([src, dst]), off, out


def _as_long(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64))


def _as_index(x: np.ndarray) -> torch.Tensor:
    """int32 where the values fit (half the memory; every index op of the model accepts it), else int64; masks
    stay bool."""
    if x.dtype == np.bool_:
        return torch.from_numpy(np.ascontiguousarray(x))
    if x.size == 0 or int(x.max()) < 2**31 - 1:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.int32))
    return _as_long(x)


def _to_torch(obj, convert=_as_long):
    return dataclasses.replace(obj, **{f.name: convert(getattr(obj, f.name)) for f in dataclasses.fields(obj)
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
        pad = group_table(np.bincount(dst, minlength=n_total), len(dst))  # dst is sorted
        raw[name] = (src, dst, off)
        sets[name] = EdgeSet(_as_long(np.stack([src, dst])), _as_long(off), pad.shape[1], _as_long(pad),
                             _as_long(np.append(src, n_total)[pad]))

    geo_index, geo_offset, geo_maps = geometry_index(raw, n_total)
    for name, m in geo_maps.items():
        if m is not None:
            sets[name].geo = _as_long(m)

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
        quad=_to_torch(q, _as_index),  # the largest index sets (3,372 quadruplets per atom in bulk Cu): int32
        geo_index=_as_long(geo_index), geo_offset=_as_long(geo_offset),
    )
    return batch.to(device) if device is not None else batch
