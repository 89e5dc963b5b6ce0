"""From structures (ASE ``Atoms``, pymatgen ``Structure`` or plain arrays) to a :class:`GraphBatch`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..config import GraphConfig
from .batch import GraphBatch, collate
from .rules import StructureGraphs, build_structure_graphs

__all__ = ["Structure", "as_structure", "prepare_tags", "build_graphs", "batch_structures"]


@dataclass
class Structure:
    """Plain arrays of one structure: numbers (n,), positions (n, 3) A, cell (3, 3) rows, pbc (3,), tags (n,)."""

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    tags: np.ndarray


def as_structure(obj) -> Structure:
    """Accept ASE ``Atoms``, pymatgen ``Structure``/``Molecule``, a dict with numbers/positions[/cell/pbc/tags]."""
    if isinstance(obj, Structure):
        return obj
    if isinstance(obj, dict):
        n = len(obj["numbers"])
        cell = np.asarray(obj.get("cell", np.zeros((3, 3))), dtype=np.float64).reshape(3, 3)
        pbc = obj.get("pbc")
        pbc = np.asarray(pbc if pbc is not None else [bool(np.abs(cell).sum() > 0)] * 3, dtype=bool)
        return Structure(np.asarray(obj["numbers"], dtype=np.int64), np.asarray(obj["positions"], dtype=np.float64),
                         cell, np.broadcast_to(pbc, (3,)).copy(), np.asarray(obj.get("tags", np.zeros(n)), np.int64))
    if not hasattr(obj, "get_positions"):  # pymatgen
        try:
            from pymatgen.io.ase import AseAtomsAdaptor
        except ImportError:  # pragma: no cover
            raise TypeError(f"expected ase.Atoms or a pymatgen structure, got {type(obj).__name__}") from None
        try:
            obj = AseAtomsAdaptor.get_atoms(obj)
        except Exception:  # noqa: BLE001
            raise TypeError(f"expected ase.Atoms or a pymatgen structure, got {type(obj).__name__}") from None
    return Structure(np.asarray(obj.get_atomic_numbers(), dtype=np.int64),
                     np.asarray(obj.get_positions(), dtype=np.float64),
                     np.asarray(obj.get_cell().array, dtype=np.float64),
                     np.asarray(obj.get_pbc(), dtype=bool),
                     np.asarray(obj.get_tags(), dtype=np.int64))


def prepare_tags(tags: np.ndarray, set_tags_to: int | None) -> np.ndarray:
    """JMP's tag conventions: molecular heads set every tag to 2; untagged structures (all 0) count as tag 2."""
    if set_tags_to is not None:
        return np.full(len(tags), set_tags_to, dtype=np.int64)
    if len(tags) and not np.any(tags):
        return np.full(len(tags), 2, dtype=np.int64)
    return tags


def build_graphs(s: Structure, graph: GraphConfig, qint_tags, set_tags_to: int | None = None, *,
                 edge_dropout: float = 0.0, rng: np.random.Generator | None = None) -> StructureGraphs:
    """The four graphs of ``s`` (``edge_dropout``/``rng``: training only, see :func:`build_structure_graphs`)."""
    pbc = s.pbc if graph.pbc is None else np.array([graph.pbc] * 3)
    return build_structure_graphs(s.positions, s.cell, pbc, prepare_tags(s.tags, set_tags_to), graph, qint_tags,
                                  edge_dropout=edge_dropout, rng=rng)


def batch_structures(structures, graph: GraphConfig | list[GraphConfig], qint_tags, *,
                     set_tags_to: int | None | list = None, dtype=torch.float32, device=None,
                     graphs: list[StructureGraphs] | None = None) -> GraphBatch:
    """Graphs for every structure (one graph setting, or one per structure) collated into one batch."""
    structs = [as_structure(s) for s in structures]
    n = len(structs)
    graph_cfgs = graph if isinstance(graph, list) else [graph] * n
    tag_rules = set_tags_to if isinstance(set_tags_to, list) else [set_tags_to] * n
    if graphs is None:
        graphs = [build_graphs(s, g, qint_tags, t) for s, g, t in zip(structs, graph_cfgs, tag_rules)]
    return collate(graphs, [s.positions for s in structs], [s.numbers for s in structs],
                   [s.cell for s in structs], dtype=dtype, device=device)
