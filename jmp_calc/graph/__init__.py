"""Neighbour lists, JMP's graph rules, triplet/quadruplet indices and batching. Lives outside the model."""

from .batch import EdgeSet, GraphBatch, collate
from .neighbors import neighbor_list
from .rules import StructureGraphs, build_structure_graphs

__all__ = ["EdgeSet", "GraphBatch", "StructureGraphs", "build_structure_graphs", "collate", "neighbor_list"]
