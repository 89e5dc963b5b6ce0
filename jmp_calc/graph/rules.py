"""JMP's rules for the four GemNet-OC graphs of one structure.

1. ``a2a``: all pairs within the cutoff, at most ``floor(1000 n / 30)`` nearest per target atom.
2. ``main``, ``a2ee2a``, ``qint``: the ``n``, ``floor(20 n / 30)``, ``floor(8 n / 30)`` nearest a2a edges of each
   target atom (k-NN by distance; ties broken by source index and image, deterministically).
3. ``qint`` keeps an edge only if its source or its target carries a tag in ``qint_tags``.
4. ``main`` is made symmetric: keep the k-NN edges ``s -> t`` with ``s < t`` (or ``s == t`` with a
   lexicographically negative image offset) and add their reverses. The pair {a < b} is thus present iff b chose a.

Every graph is returned sorted by target atom, which the triplet/quadruplet index code relies on.

Edge dropout (training only, JMP's rule): each a2a edge is dropped with probability ``p`` after rule 1 and before
rule 2, so ``main``, ``a2ee2a`` and ``qint`` are the k nearest of the edges that survived. (The reversed edges rule 4
adds to ``main`` may be edges that were dropped from a2a.) The model divides its output-block sums by ``1 - p``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import GraphConfig
from .neighbors import neighbor_list

__all__ = ["Edges", "StructureGraphs", "build_structure_graphs", "knn_rank"]


@dataclass
class Edges:
    """Edges of one graph: ``src``, ``dst`` (E,), integer image ``offset`` (E, 3), ``dist`` (E,) in Angstrom."""

    src: np.ndarray
    dst: np.ndarray
    offset: np.ndarray
    dist: np.ndarray

    def select(self, mask_or_index) -> Edges:
        return Edges(self.src[mask_or_index], self.dst[mask_or_index], self.offset[mask_or_index],
                     self.dist[mask_or_index])

    def __len__(self) -> int:
        return len(self.src)


@dataclass
class StructureGraphs:
    """The four graphs of one structure (local atom indices) and the facts needed to batch them."""

    main: Edges
    a2ee2a: Edges
    qint: Edges
    a2a: Edges
    n_atoms: int
    truncated: bool  #: some atom had more neighbours within the cutoff than a capped graph keeps
    kth_gap: float  #: smallest gap (A) between the k-th and (k+1)-th neighbour at any cap where truncation happened


def knn_rank(dst: np.ndarray, dist: np.ndarray, src: np.ndarray, offset: np.ndarray, n_atoms: int):
    """Order edges by (target, distance, source, image) and return (order, rank of each ordered edge)."""
    order = np.lexsort((offset[:, 2], offset[:, 1], offset[:, 0], src, dist, dst))
    dst_sorted = dst[order]
    counts = np.bincount(dst_sorted, minlength=n_atoms)
    starts = np.cumsum(counts) - counts
    rank = np.arange(len(order)) - starts[dst_sorted]
    return order, rank


def _symmetrize(e: Edges) -> Edges:
    o = e.offset
    negative_image = (o[:, 0] < 0) | ((o[:, 0] == 0) & (o[:, 1] < 0)) | \
        ((o[:, 0] == 0) & (o[:, 1] == 0) & (o[:, 2] < 0))
    keep = (e.src < e.dst) | ((e.src == e.dst) & negative_image)
    k = e.select(keep)
    both = Edges(np.concatenate([k.src, k.dst]), np.concatenate([k.dst, k.src]),
                 np.concatenate([k.offset, -k.offset]), np.concatenate([k.dist, k.dist]))
    return both.select(np.argsort(both.dst, kind="stable"))


def build_structure_graphs(positions: np.ndarray, cell: np.ndarray, pbc, tags: np.ndarray, graph: GraphConfig,
                           qint_tags, *, edge_dropout: float = 0.0,
                           rng: np.random.Generator | None = None) -> StructureGraphs:
    """Build the four JMP graphs of one structure. ``pbc``: 3 booleans; ``tags``: (n,) ints.

    ``edge_dropout`` > 0 (training batches only) drops each a2a edge with that probability, drawn from ``rng``
    (required then: the caller decides how the draws are seeded), before the other graphs are selected from a2a.
    """
    if not 0.0 <= edge_dropout < 1.0:
        raise ValueError(f"edge_dropout must be in [0, 1), got {edge_dropout}")
    if edge_dropout and rng is None:
        raise ValueError("edge_dropout > 0 needs rng (a numpy Generator)")
    n = len(positions)
    caps = graph.caps
    src, dst, off, dist = neighbor_list(positions, cell, pbc, graph.cutoff)
    order, rank = knn_rank(dst, dist, src, off, n)
    all_edges = Edges(src[order], dst[order], off[order], dist[order])

    # smallest gap between the k-th and (k+1)-th neighbour over all capped graphs: ~0 means a tie at a cap, where
    # the selected neighbours (and so the forces) jump under an infinitesimal displacement
    truncated, gap = False, float("inf")
    counts = np.bincount(all_edges.dst, minlength=n)
    starts = np.cumsum(counts) - counts
    for k in {caps["main"], caps["a2ee2a"], caps["qint"]}:
        over = np.nonzero(counts > k)[0]
        if len(over):
            truncated = True
            gap = min(gap, float(np.min(all_edges.dist[starts[over] + k] - all_edges.dist[starts[over] + k - 1])))

    a2a = all_edges.select(rank < caps["a2a"])
    rank_a2a = rank[rank < caps["a2a"]]
    if edge_dropout:
        a2a = a2a.select(rng.random(len(a2a)) >= edge_dropout)  # still ordered by (target, distance, ...)
        counts = np.bincount(a2a.dst, minlength=n)
        rank_a2a = np.arange(len(a2a)) - (np.cumsum(counts) - counts)[a2a.dst]
    main_knn = a2a.select(rank_a2a < caps["main"])
    a2ee2a = a2a.select(rank_a2a < caps["a2ee2a"])
    qint = a2a.select(rank_a2a < caps["qint"])
    tag_ok = np.isin(tags, np.asarray(qint_tags))
    qint = qint.select(tag_ok[qint.src] | tag_ok[qint.dst])
    return StructureGraphs(main=_symmetrize(main_knn), a2ee2a=a2ee2a, qint=qint, a2a=a2a, n_atoms=n,
                           truncated=truncated, kth_gap=gap)
