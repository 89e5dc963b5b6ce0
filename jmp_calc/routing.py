"""Which head evaluates a structure: a selector, either one fixed head or the model card's ``head_rules``.

A multi-domain model (e.g. ``jmp-mini-general``: an EMT ``surfaces`` head and a GFN2-xTB ``molecules`` head on one
backbone) carries ``head_rules`` in its model card: an ordered list of rules, each naming a head and, optionally, a
condition on the structure's elements::

    "head_rules": [{"head": "molecules", "only_elements": [1, 6, 7, 8]},   # only H, C, N, O -> molecules
                   {"head": "surfaces"}]                                  # anything else

``only_elements``: every atom is one of these; ``any_element``: at least one atom is one of these; no condition:
always matches (the last rule should have none). :func:`selector_for` gives :class:`HeadRules` when no head is
asked for and the card has rules, else :class:`FixedHead`; :class:`~jmp_calc.potential.Potential` evaluates each
structure with the head its selector names.

Beware: the heads follow their own datasets' levels of theory, so energy *differences* between structures routed to
different heads (an adsorbate on a metal slab against the gas-phase molecule) mix two levels of theory; pass
``head=`` to evaluate every structure with one head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .card import HeadRule
from .errors import InputError

__all__ = ["FixedHead", "HeadRules", "selector_for"]


@dataclass(frozen=True)
class FixedHead:
    """Every structure goes to ``head``."""

    head: str

    @property
    def heads(self) -> tuple[str, ...]:
        return (self.head,)

    def head_for(self, structure) -> str:
        return self.head


@dataclass(frozen=True)
class HeadRules:
    """Each structure goes to the head of the first rule its elements match (see the module docstring)."""

    rules: tuple[HeadRule, ...]

    @property
    def heads(self) -> tuple[str, ...]:
        """The heads the rules name, in rule order (each once)."""
        return tuple(dict.fromkeys(r.head for r in self.rules))

    def head_for(self, structure) -> str:
        """``structure``: anything with ``numbers`` (a :class:`~jmp_calc.graph.structures.Structure`)."""
        z = set(np.unique(structure.numbers).tolist())
        for rule in self.rules:
            if rule.matches(z):
                return rule.head
        raise InputError(f"no head rule matches a structure of elements {sorted(z)}; pass head=... explicitly")


def selector_for(model, head: str | int | None = None) -> FixedHead | HeadRules:
    """``head`` (a name or index) as a :class:`FixedHead`; ``None``/``"auto"``: the card's ``head_rules`` when it
    has them, else its ``default_head`` (else the first head)."""
    if head in (None, "auto"):
        if model.card.head_rules:
            return HeadRules(tuple(model.card.head_rules))
        head = model.card.default_head if model.card.default_head is not None else 0
    return FixedHead(model.head_names[model.head_index(head)])
