"""Several heads of one model behind one :class:`~jmp_calc.potential.Potential` interface.

A multi-domain model (e.g. ``jmp-mini-general``: an EMT ``surfaces`` head and a GFN2-xTB ``molecules`` head on one
backbone) carries ``head_rules`` in its model card: an ordered list of rules, each naming a head and, optionally, a
condition on the structure's elements::

    "head_rules": [{"head": "molecules", "only_elements": [1, 6, 7, 8]},   # only H, C, N, O -> molecules
                   {"head": "surfaces"}]                                  # anything else

``only_elements``: every atom is one of these; ``any_element``: at least one atom is one of these; no condition:
always matches (the last rule should have none). :func:`make_potential` returns a :class:`RoutedPotential` when no
head is asked for and the card has rules, else a plain :class:`Potential` of the one head.

Beware: the heads follow their own datasets' levels of theory, so energy *differences* between structures routed to
different heads (an adsorbate on a metal slab against the gas-phase molecule) mix two levels of theory; pass
``head=`` to evaluate every structure with one head.
"""

from __future__ import annotations

import numpy as np

from .graph.structures import as_structure
from .potential import InputError, Potential, progress_bar

__all__ = ["RoutedPotential", "make_potential", "head_rules"]


def head_rules(model) -> tuple | None:
    """The ``head_rules`` of a model's card (None when it has none; validated when the card was read)."""
    return model.card.head_rules or None


def make_potential(model, *, head=None, **kwargs):
    """``Potential(model, head=head, ...)``, or a :class:`RoutedPotential` when ``head`` is None/"auto" and the
    model card has ``head_rules``."""
    rules = head_rules(model)
    if rules and head in (None, "auto"):
        return RoutedPotential(model, rules, **kwargs)
    if head == "auto":
        head = None
    return Potential(model, head=head, **kwargs)


class RoutedPotential:
    """Sends each structure to the head of the first matching rule (see the module docstring); otherwise behaves
    like :class:`Potential` (``predict``, ``predict_many``, ``iter_predict``, ``batch`` + ``predict_tensors``).
    The heads share one model in memory."""

    def __init__(self, model, rules: list[dict], **kwargs):
        self.rules = [(r.head, frozenset(r.only_elements or ()), frozenset(r.any_element or ())) for r in rules]
        self.potentials: dict[str, Potential] = {}
        for name, _, _ in self.rules:
            if name not in self.potentials:
                self.potentials[name] = Potential(model, head=name, **kwargs)
        first = next(iter(self.potentials.values()))
        self.model, self.device, self.dtype = first.model, first.device, first.dtype
        kinds = {p.forces for p in self.potentials.values()}
        self.forces = kinds.pop() if len(kinds) == 1 else "mixed"
        self._current: Potential | None = None

    @property
    def implemented_properties(self) -> list[str]:
        sets = [p.implemented_properties for p in self.potentials.values()]
        return [k for k in sets[0] if all(k in s for s in sets[1:])]

    def route(self, structure) -> str:
        """The head that evaluates ``structure``."""
        z = set(np.unique(as_structure(structure).numbers).tolist())
        for name, only, any_ in self.rules:
            if only and not z <= only:
                continue
            if any_ and not z & any_:
                continue
            return name
        raise InputError(f"no head rule matches a structure of elements {sorted(z)}; pass head=... explicitly")

    def potential_for(self, structure) -> Potential:
        return self.potentials[self.route(structure)]

    def predict(self, structures, properties=("energy", "forces"), graphs=None) -> list[dict]:
        """Structures grouped by head, one model call per head; results in input order."""
        if graphs is not None:
            raise InputError("prebuilt graphs need a single head: use head=... (graphs depend on the head)")
        return self._by_head([as_structure(s) for s in structures],
                             lambda pot, group: pot.predict(group, properties=properties))

    def predict_many(self, structures, **kwargs) -> list[dict]:
        return list(self.iter_predict(structures, **kwargs))

    def iter_predict(self, structures, *, batch_size: int | None = None, max_atoms: int | None = None,
                     max_edges: int | None = None, properties=("energy", "forces"), progress: bool | None = None):
        """As :meth:`Potential.iter_predict`: consecutive structures are read in chunks (``batch_size``
        structures, ``max_atoms`` atoms), each chunk is split by head and evaluated head by head (in batches
        bounded by ``max_atoms`` / ``max_edges``), and the results are yielded in input order."""
        batch_size = batch_size or 256
        max_atoms, max_edges = next(iter(self.potentials.values())).batch_limits(max_atoms, max_edges)

        def evaluate(pot, group):
            return pot.predict_many(group, max_atoms=max_atoms, max_edges=max_edges, properties=properties,
                                    progress=False)

        bar = progress_bar(structures, progress)
        chunk, n_atoms = [], 0
        try:
            for obj in structures:
                s = as_structure(obj)
                if chunk and (len(chunk) >= batch_size or n_atoms + len(s.numbers) > max_atoms):
                    yield from self._by_head(chunk, evaluate)
                    bar.update(len(chunk))
                    chunk, n_atoms = [], 0
                chunk.append(s)
                n_atoms += len(s.numbers)
            if chunk:
                yield from self._by_head(chunk, evaluate)
                bar.update(len(chunk))
        finally:
            bar.close()

    def _by_head(self, structures: list, evaluate) -> list[dict]:
        """``evaluate(potential, structures_of_its_head)`` for each head; results back in input order."""
        groups: dict[str, list[int]] = {}
        for i, s in enumerate(structures):
            groups.setdefault(self.route(s), []).append(i)
        out: list[dict | None] = [None] * len(structures)
        for name, idx in groups.items():
            for i, r in zip(idx, evaluate(self.potentials[name], [structures[i] for i in idx])):
                out[i] = r
        return out

    # torch-level interface (torch-sim, embeddings): one head per batch
    def batch(self, structures, graphs=None):
        structures = [as_structure(s) for s in structures]
        names = {self.route(s) for s in structures}
        if len(names) != 1:
            raise InputError(f"this batch mixes structures for heads {sorted(names)}; evaluate them separately or "
                             "pass head=... to use one head for all")
        self._current = self.potentials[names.pop()]
        return self._current.batch(structures, graphs)

    def predict_tensors(self, g, props):
        if self._current is None:
            raise InputError("call batch() first: it picks the head")
        return self._current.predict_tensors(g, props)

    @property
    def elements(self) -> set:
        """Elements the model saw in training (its card's; the same for every head)."""
        return next(iter(self.potentials.values())).elements

    @property
    def graph_reuses(self) -> int:
        return sum(p.graph_reuses for p in self.potentials.values())
