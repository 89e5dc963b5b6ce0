"""The model card: what a model is, what it was trained on, and the few fields that decide how it is used.

Written to ``config.json`` (key ``card``) next to ``model.safetensors``, read back and validated when the model is
loaded (an unknown or ill-typed field is a :class:`~jmp_calc.errors.ModelCardError` naming the file and the field),
and carried by the model from its construction (``JMPModel(config, heads, card=...)``, ``model.card``).

Fields that change behaviour: ``default_head`` (the head used when none is asked for), ``head_rules`` (a head
chosen per structure, see :mod:`jmp_calc.routing`), ``forces`` (per head: ``"direct"`` or ``"conservative"``, what
``forces="auto"`` picks), ``elements`` (atomic numbers seen in training; others give a warning), ``pretraining``
(pre-training heads: the calculator asks for an explicit ``head=`` and warns) and ``license`` (a non-commercial one
gives a warning). The rest describes the model for people (and ``training.publish``'s Hub README).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union

from .errors import ModelCardError

__all__ = ["ModelCard", "HeadRule"]


@dataclass(frozen=True)
class HeadRule:
    """One rule of ``head_rules``: ``head`` evaluates a structure whose elements are all in ``only_elements`` and
    that has at least one of ``any_element`` (each condition only when given; no condition: always matches)."""

    head: str
    only_elements: tuple[int, ...] | None = None
    any_element: tuple[int, ...] | None = None

    def matches(self, elements: set[int]) -> bool:
        if self.only_elements is not None and not elements <= set(self.only_elements):
            return False
        if self.any_element is not None and not elements & set(self.any_element):
            return False
        return True


@dataclass(frozen=True)
class ModelCard:
    """Typed model card; every field is optional (a model built in code has an empty card)."""

    # --- fields that decide behaviour
    name: str | None = None
    default_head: str | None = None  #: head used when none is asked for (None: the first, or head_rules)
    head_rules: tuple[HeadRule, ...] | None = None  #: a head per structure (first matching rule)
    forces: dict[str, str] = field(default_factory=dict)  #: head -> "direct" | "conservative"
    elements: tuple[int, ...] = ()  #: atomic numbers of the training data
    pretraining: bool = False  #: pre-training heads (zero-shot use needs head= and warns)
    license: str | None = None
    # --- description
    task: str | None = None
    targets: tuple[str, ...] | None = None  #: trained targets: energy, forces, stress
    units: dict[str, str] | None = None
    level_of_theory: str | dict[str, str] | None = None  #: one, or one per head
    dispersion: bool | None = None
    training_data: str | list[str] | dict[str, str] | None = None  #: one, a list of datasets, or one per head
    trained_from: str | None = None
    base_model: str | None = None
    source: str | None = None  #: the file a converted model came from
    graph: dict[str, Any] | None = None  #: graph settings at training time (informational; heads carry their own)
    seed: int | None = None
    notes: tuple[str, ...] | None = None
    n_train: int | None = None
    n_valid: int | None = None
    n_train_frames: int | None = None
    n_valid_frames: int | None = None
    n_test_frames: int | None = None
    epochs: int | None = None
    best_epoch: int | None = None
    wall_time_s: float | None = None
    valid_metrics: dict[str, Any] | None = None
    test_metrics: dict[str, Any] | None = None

    # ------------------------------------------------------------------ dict round trip
    @classmethod
    def from_dict(cls, data, *, where: str = "model card") -> ModelCard:
        """A validated card from the plain dict of ``config.json``; ``where`` names the file in errors."""
        if isinstance(data, ModelCard):
            return data
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ModelCardError(f"{where}: card must be a mapping of fields, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ModelCardError(f"{where}: unknown card field(s) {unknown}; known fields are {names}")
        values = {}
        for key, value in data.items():
            if key == "head_rules":
                values[key] = _head_rules(value, f"{where}: card field 'head_rules'")
                continue
            values[key] = _coerce(value, hints[key], f"{where}: card field {key!r}")
        bad = {h: k for h, k in (values.get("forces") or {}).items() if k not in ("direct", "conservative")}
        if bad:
            raise ModelCardError(f"{where}: card field 'forces' must map heads to 'direct' or 'conservative', "
                                 f"got {bad}")
        return cls(**values)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict of the fields that are set (None and empty defaults left out)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None or (f.name in ("forces", "elements") and not value) or \
                    (f.name == "pretraining" and value is False):
                continue
            if f.name == "head_rules":
                value = [{k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(r).items()
                          if v is not None} for r in value]
            out[f.name] = _plain(value)
        return out

    def replace(self, **fields) -> ModelCard:
        """A new card with ``fields`` merged over this one's (validated like a loaded card)."""
        return ModelCard.from_dict({**self.to_dict(), **fields}, where="card fields")

    def check_heads(self, head_names: list[str], *, where: str = "model card") -> None:
        """Raise :class:`ModelCardError` when a field names a head the model does not have."""
        named = [("default_head", self.default_head)] if self.default_head is not None else []
        named += [("forces", h) for h in self.forces]
        named += [("head_rules", r.head) for r in self.head_rules or ()]
        for key, head in named:
            if head not in head_names:
                raise ModelCardError(f"{where}: card field {key!r} names head {head!r}; the model has heads "
                                     f"{head_names}")


def _head_rules(value, where: str):
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise ModelCardError(f"{where} must be a non-empty list of rules, got {value!r}")
    rules = []
    hints = typing.get_type_hints(HeadRule)
    for i, r in enumerate(value):
        if not isinstance(r, dict) or "head" not in r:
            raise ModelCardError(f"{where}[{i}] must be a mapping with a 'head', got {r!r}")
        unknown = sorted(set(r) - set(hints))
        if unknown:
            raise ModelCardError(f"{where}[{i}]: unknown condition(s) {unknown} in {r}; known: only_elements, "
                                 "any_element")
        rules.append(HeadRule(**{k: _coerce(v, hints[k], f"{where}[{i}].{k}") for k, v in r.items()}))
    return tuple(rules)


def _type_name(tp) -> str:
    """``list[int] | None`` -> "a list of int or null" (the words of JSON, where cards are written)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin in (list, tuple):
        return f"a list of {_type_name(args[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return f"a mapping of names to {_type_name(args[1])}"
    return {type(None): "null", str: "a string", int: "an integer", float: "a number", bool: "true/false"}.get(
        tp, "anything" if tp is Any else getattr(tp, "__name__", str(tp)))


def _coerce(value, tp, where: str):
    """``value`` checked against the annotation ``tp`` (lists become tuples where the field is a tuple)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, where)
            except ModelCardError:
                continue
        raise ModelCardError(f"{where} must be {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
    elif origin in (list, tuple):
        if isinstance(value, (list, tuple)):
            (item,) = typing.get_args(tp)[:1]
            items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
            return tuple(items) if origin is tuple else items
    elif origin is dict:
        if isinstance(value, dict):
            _, vt = typing.get_args(tp)
            for k in value:
                if not isinstance(k, str):
                    raise ModelCardError(f"{where} keys must be strings, got {k!r}")
            return {k: _coerce(v, vt, f"{where}[{k!r}]") for k, v in value.items()}
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, tp):
        return value
    raise ModelCardError(f"{where} must be {_type_name(tp)}, got {value!r}")


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
