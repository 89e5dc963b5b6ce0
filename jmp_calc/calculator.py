"""JMPCalculator: the ASE face of a :class:`~jmp_calc.potential.Potential` (atoms -> graph -> model -> results)."""

from __future__ import annotations

import warnings

import numpy as np

from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from .potential import Potential

__all__ = ["JMPCalculator", "list_models"]


def list_models(print_table: bool = True):
    """Models available by name (see :mod:`jmp_calc.io.registry`)."""
    from .io.registry import list_models as _list

    return _list(print_table)


class JMPCalculator(Calculator):
    """ASE calculator for GemNet-OC / JMP models.

    ``model``: ``None`` (the model shipped inside the package, offline), the name of a shipped model, a model
    directory, a ``model.safetensors`` file, an original JMP checkpoint (``jmp-s.pt``), or a
    :class:`~jmp_calc.model.JMPModel`. Keyword options: ``head`` (name or index; default: the model's default
    head), ``forces`` (``"auto"``, ``"direct"``, ``"conservative"``), ``dtype`` (``"float32"``/``"float64"``),
    ``device`` (``"auto"`` = CUDA when present), ``ema`` (EMA weights of Lightning checkpoints), ``cutoff`` and
    ``max_neighbors`` (override the head's graph settings), ``deterministic`` (bit-identical repeated results,
    also on GPU).

    Tags come from ``atoms.get_tags()`` (all-zero tags count as 2, as JMP treats non-catalysis data) and
    periodicity from ``atoms.pbc`` (molecular pre-training heads always use open boundaries, as in JMP).
    """

    def __init__(self, model=None, *, head: str | int | None = None, forces: str = "auto", dtype: str = "float32",
                 device: str = "auto", ema: bool = True, cutoff: float | None = None,
                 max_neighbors: int | None = None, deterministic: bool = False, **kwargs):
        super().__init__(**kwargs)
        from .io import load_model

        net = load_model(model, ema=ema)
        license_ = (getattr(net, "source", None) or {}).get("license")
        if license_ and "NC" in str(license_):
            warnings.warn(f"model licence: {license_}", UserWarning, stacklevel=2)
        is_pretraining = (getattr(net, "source", None) or {}).get("format") == "jmp-lightning"
        if is_pretraining:
            if head is None:
                raise ValueError(f"this is a JMP pre-training checkpoint: choose one of its heads {net.head_names} "
                                 "with head=... (they predict in their datasets' conventions; they are not "
                                 "fitted potentials for your system)")
            warnings.warn(f"using the pre-training head {head!r} zero-shot: energies follow {head}'s reference "
                          "convention (e.g. OC20 adsorption energies), not total energies", UserWarning,
                          stacklevel=2)
        self.potential = Potential(net, head=head, forces=forces, dtype=dtype, device=device, cutoff=cutoff,
                                   max_neighbors=max_neighbors, deterministic=deterministic)
        self.implemented_properties = self.potential.implemented_properties

    @property
    def model(self):
        return self.potential.model

    def predict_many(self, atoms_list, batch_size: int | None = None, **kwargs) -> list[dict]:
        """Energy/forces (and stress for conservative models) of many structures, batched; see
        :meth:`jmp_calc.potential.Potential.predict_many`. Returns one dict of numpy arrays per structure."""
        periodic = all(bool(np.all(a.pbc)) for a in atoms_list)
        props = ("energy", "forces", "stress") if periodic and "stress" in self.implemented_properties \
            else ("energy", "forces")
        return self.potential.predict_many(atoms_list, batch_size=batch_size, properties=props, **kwargs)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """One model call gives every property of the state (energy, free_energy, per-atom energies, forces, and
        stress when the model is conservative and the structure periodic: the strain derivative comes from the
        same backward pass), so ASE asking for another property of the same state never re-runs the model.
        Only positions changed: the graph's index sets are reused (see :meth:`Potential.batch`)."""
        super().calculate(atoms, properties, system_changes)
        props = {"energy", "forces"}
        stress_ok = "stress" in self.implemented_properties and bool(self.atoms.pbc.all())
        if "stress" in properties and not stress_ok:
            if "stress" not in self.implemented_properties:
                raise PropertyNotImplementedError(
                    "stress needs conservative forces: JMPCalculator(..., forces='conservative')")
            raise PropertyNotImplementedError("stress is only defined for structures periodic in 3 directions")
        if stress_ok:
            props.add("stress")
        (result,) = self.potential.predict([self.atoms], properties=tuple(props))
        self.results.update(result)
