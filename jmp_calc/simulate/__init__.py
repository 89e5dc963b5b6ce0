"""Simulation helpers on batched predictions (phonons now; batched relaxation and MD replicas to come)."""

from .phonons import phonons

__all__ = ["phonons"]
