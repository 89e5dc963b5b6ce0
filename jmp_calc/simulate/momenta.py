"""Initial momenta for molecular dynamics: Maxwell-Boltzmann at a temperature, without drift (and rotation)."""

from __future__ import annotations

import math

from ..errors import InputError

__all__ = ["set_maxwell_boltzmann_momenta"]


def set_maxwell_boltzmann_momenta(atoms, temperature_K: float, rng, *, zero_rotation: bool | None = None) -> None:
    """Set ``atoms``' momenta to a Maxwell-Boltzmann draw at ``temperature_K`` from ``rng`` (a numpy Generator),
    then remove the total momentum (ASE ``Stationary``) and, for a structure periodic in no direction (or with
    ``zero_rotation=True``), the angular momentum (``ZeroRotation``), so that NVE conserves what it should.

    The draw is ASE's ``thermalize_momenta`` (ASE >= 3.29; ``MaxwellBoltzmannDistribution`` before, the same
    numbers for the same ``rng``). ASE rescales the momenta after removing drift and rotation, so the kinetic energy
    is that of the draw. In a harmonic solid about half of it goes to the potential energy: to reach a temperature
    after equipartition, start at twice it.
    """
    from ase.md.velocitydistribution import Stationary, ZeroRotation

    if not (math.isfinite(temperature_K) and temperature_K >= 0):
        raise InputError(f"temperature_K must be a finite number >= 0, got {temperature_K!r}")
    try:
        from ase.md.velocitydistribution import thermalize_momenta
    except ImportError:  # ASE < 3.29
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    else:
        thermalize_momenta(atoms, temperature_K, rng=rng)
    Stationary(atoms)
    if zero_rotation if zero_rotation is not None else not atoms.pbc.any():
        ZeroRotation(atoms)
