"""Simulation helpers on batched predictions: lock-step relaxations, MD replicas and phonons; initial MD momenta."""

from .md import run_md
from .momenta import set_maxwell_boltzmann_momenta
from .phonons import phonons
from .relax import relax_many

__all__ = ["phonons", "relax_many", "run_md", "set_maxwell_boltzmann_momenta"]
