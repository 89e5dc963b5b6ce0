"""Simulation helpers on batched predictions: lock-step relaxations, MD replicas and phonons."""

from .md import run_md
from .phonons import phonons
from .relax import relax_many

__all__ = ["phonons", "relax_many", "run_md"]
