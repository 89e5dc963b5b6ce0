"""JMPCalculator: the ASE face of a :class:`~jmp_calc.potential.Potential` (atoms -> graph -> model -> results)."""

from __future__ import annotations

import collections
import warnings

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from .graph.structures import as_structure

__all__ = ["JMPCalculator", "list_models"]


def list_models(print_table: bool = True):
    """Models available by name (see :mod:`jmp_calc.io.registry`)."""
    from .io.registry import list_models as _list

    return _list(print_table)


class _PeriodicTap:
    """Iterates over ``items`` as :class:`Structure`, noting for each whether it is periodic in 3 directions."""

    def __init__(self, items):
        self.items, self.periodic = items, collections.deque()

    def __len__(self) -> int:
        return len(self.items)  # TypeError for generators: no total for the progress bar

    def __iter__(self):
        from .potential import STRUCTURE_ERRORS

        for obj in self.items:
            try:
                s = as_structure(obj)
            except STRUCTURE_ERRORS:  # not a structure: the potential reports it (raises, or its error record)
                self.periodic.append(False)
                yield obj
                continue
            self.periodic.append(bool(np.all(s.pbc)))
            yield s


class JMPCalculator(Calculator):
    """ASE calculator for GemNet-OC / JMP models.

    ``model``: ``None`` (the model shipped inside the package, offline), the name of a shipped model, a model
    directory, a ``model.safetensors`` file, an original JMP checkpoint (``jmp-s.pt``), or a
    :class:`~jmp_calc.model.JMPModel`. Keyword options: ``head`` (name or index; default: the model's default
    head, or, for models whose card has ``head_rules`` such as the default ``jmp-mini-general``, a head chosen per
    structure from its elements: see :mod:`jmp_calc.routing`), ``forces`` (``"auto"``, ``"direct"``,
    ``"conservative"``), ``dtype`` (``"float32"``/``"float64"``), ``device`` (``"auto"`` = CUDA when present),
    ``ema`` (EMA weights of Lightning checkpoints), ``cutoff`` and ``max_neighbors`` (override the heads' graph
    settings), ``deterministic`` (bit-identical repeated results, also on GPU), ``compile`` (``True`` or a
    :class:`~jmp_calc.compile.CompileOptions`: the forward pass through ``torch.compile``, see
    :mod:`jmp_calc.compile`; the first call compiles, later sizes reuse it; eager with one warning if it fails).

    Tags come from ``atoms.get_tags()`` (all-zero tags count as 2, as JMP treats non-catalysis data) and
    periodicity from ``atoms.pbc`` (molecular pre-training heads always use open boundaries, as in JMP).
    """

    def __init__(self, model=None, *, head: str | int | None = None, forces: str = "auto", dtype: str = "float32",
                 device: str = "auto", ema: bool = True, cutoff: float | None = None,
                 max_neighbors: int | None = None, deterministic: bool = False, compile=False, **kwargs):
        super().__init__(**kwargs)
        from .io import load_model
        from .model.jmp import JMPModel
        from .potential import Potential, resolve_device, resolve_dtype

        net = load_model(model, ema=ema)
        if net.card.license and "NC" in net.card.license:
            warnings.warn(f"model licence: {net.card.license}", UserWarning, stacklevel=2)
        if net.card.pretraining:
            if head is None:
                raise ValueError(f"this is a pre-training checkpoint: choose one of its heads {net.head_names} "
                                 "with head=... (they predict in their datasets' conventions; they are not "
                                 "fitted potentials for your system)")
            warnings.warn(f"using the pre-training head {head!r} zero-shot: energies follow {head}'s reference "
                          "convention (e.g. OC20 adsorption energies), not total energies", UserWarning,
                          stacklevel=2)
        if not isinstance(model, JMPModel):  # loaded here, ours: prepared in place (no copy in Potential)
            net = net.to(device=resolve_device(device), dtype=resolve_dtype(dtype)).eval().requires_grad_(False)
        #: the Potential: one fixed head, or a head per structure for models whose card has head_rules
        self.potential = Potential(net, head=head, forces=forces, dtype=dtype, device=device, cutoff=cutoff,
                                   max_neighbors=max_neighbors, deterministic=deterministic, compile=compile)
        self.implemented_properties = self.potential.implemented_properties

    @property
    def model(self):
        return self.potential.model

    def predict_many(self, atoms_list, batch_size: int | None = None, **kwargs) -> list[dict]:
        """Energy/forces (and stress of 3D-periodic structures, for conservative models) of many structures,
        batched: ``list(iter_predict(...))``; see :meth:`jmp_calc.potential.Potential.predict_many`. Returns one
        dict of numpy arrays per structure."""
        return list(self.iter_predict(atoms_list, batch_size=batch_size, **kwargs))

    def iter_predict(self, atoms_iter, batch_size: int | None = None, **kwargs):
        """:meth:`predict_many` for any iterable of structures (e.g. ``ase.io.iread(path)``), lazily: results are
        yielded in input order as batches finish, and a batch is read only when the previous one's results have
        been consumed, so memory does not grow with the number of structures. Options as
        :meth:`jmp_calc.potential.Potential.iter_predict`."""
        stress = "stress" in self.implemented_properties
        props = ("energy", "forces", "stress") if stress else ("energy", "forces")
        tap = _PeriodicTap(atoms_iter)
        for result in self.potential.iter_predict(tap, batch_size=batch_size, properties=props, **kwargs):
            if not tap.periodic.popleft():  # stress is defined for cells periodic in 3 directions only
                result.pop("stress", None)
            yield result

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
