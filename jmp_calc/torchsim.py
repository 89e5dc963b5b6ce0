"""GemNet-OC / JMP models in torch-sim (``pip install 'jmp-calc[torchsim]'``): batched MD and relaxation on GPU.

torch-sim dropped its GemNet-OC wrapper; :class:`JMPTorchSimModel` puts any jmp_calc model behind torch-sim's
``ModelInterface``::

    import torch_sim as ts
    from jmp_calc.torchsim import JMPTorchSimModel

    model = JMPTorchSimModel()                       # the embedded model; or a registry name / path / JMPModel
    state = ts.integrate([atoms1, atoms2], model, integrator=ts.nvt_langevin, n_steps=100,
                         temperature=300, timestep=0.001)
    relaxed = ts.optimize(state, model, optimizer=ts.frechet_cell_fire)

Graphs are built by jmp_calc's graph code (JMP's k-NN rules, on the CPU with numpy) from the state's positions,
row-vector cell, atomic numbers and ``system_idx``; the model runs on the model's device. Units are torch-sim's
(eV, Angstrom, eV/A^3); stress has the ASE sign that torch-sim uses. torch-sim states carry no tags: every atom
counts as tag 2, as JMP treats non-catalysis data.
"""

from __future__ import annotations

import numpy as np
import torch

try:
    from torch_sim.models.interface import ModelInterface
except ImportError as exc:  # pragma: no cover
    raise ImportError("jmp_calc.torchsim needs torch-sim: pip install 'jmp-calc[torchsim]'") from exc

from .graph.structures import Structure
from .potential import Potential

__all__ = ["JMPTorchSimModel"]


class JMPTorchSimModel(ModelInterface):
    """A jmp_calc model as a torch-sim model.

    ``model``: as for :class:`~jmp_calc.JMPCalculator` (``None`` = the embedded model, a registry name, a path, a
    :class:`~jmp_calc.model.JMPModel`) or an existing :class:`~jmp_calc.potential.Potential` /
    :class:`~jmp_calc.JMPCalculator` (its potential is used). ``compute_stress`` needs conservative forces (the
    default when the model allows it); ``dtype``, ``device``, ``head``, ``forces`` as for the calculator.
    """

    def __init__(self, model=None, *, head=None, forces: str = "auto", dtype=torch.float64, device=None,
                 compute_stress: bool | None = None, compute_forces: bool = True, **potential_kwargs):
        super().__init__()
        from .calculator import JMPCalculator

        if isinstance(model, JMPCalculator):
            model = model.potential
        if isinstance(model, Potential):
            self.potential = model
        else:
            from .io import load_model

            self.potential = Potential(load_model(model), head=head, forces=forces, dtype=dtype,
                                       device=device or "auto", **potential_kwargs)
        conservative = self.potential.forces == "conservative"
        if compute_stress and not conservative:
            raise ValueError("stress needs conservative forces (forces='conservative')")
        self._device = self.potential.device
        self._dtype = self.potential.dtype
        self._compute_stress = conservative if compute_stress is None else bool(compute_stress)
        self._compute_forces = bool(compute_forces)
        self._memory_scales_with = "n_atoms"

    @property
    def memory_scales_with(self) -> str:
        """``"n_atoms"``, for torch-sim's autobatchers (``BinningAutoBatcher``, ``InFlightAutoBatcher``): JMP's
        graphs cap the neighbours per atom (``max_neighbors``), so memory grows with the number of atoms, not with
        atoms times density as for an uncapped radius graph."""
        return self._memory_scales_with

    @property
    def compute_stress(self) -> bool:
        return self._compute_stress

    @compute_stress.setter
    def compute_stress(self, value: bool) -> None:
        if value and self.potential.forces != "conservative":
            raise NotImplementedError("stress needs a conservative model (forces='conservative')")
        self._compute_stress = bool(value)

    @property
    def compute_forces(self) -> bool:
        return self._compute_forces

    @compute_forces.setter
    def compute_forces(self, value: bool) -> None:
        self._compute_forces = bool(value)

    def structures(self, state) -> list[Structure]:
        """One :class:`~jmp_calc.graph.structures.Structure` per system of a torch-sim ``SimState`` (or dict)."""
        get = state.get if isinstance(state, dict) else lambda k, d=None: getattr(state, k, d)
        pos = get("positions").detach().cpu().double().numpy()
        z = get("atomic_numbers").detach().cpu().numpy().astype(np.int64)
        system_idx = get("system_idx")
        system_idx = (np.zeros(len(pos), np.int64) if system_idx is None
                      else system_idx.detach().cpu().numpy().astype(np.int64))
        if isinstance(state, dict):
            cell = get("cell").detach().cpu().double().numpy().reshape(-1, 3, 3).transpose(0, 2, 1)  # columns
        else:
            cell = state.row_vector_cell.detach().cpu().double().numpy().reshape(-1, 3, 3)
        pbc = get("pbc", True)
        pbc = pbc.detach().cpu().numpy() if torch.is_tensor(pbc) else pbc
        pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
        n_sys = int(system_idx.max()) + 1 if len(system_idx) else 0
        out = []
        for b in range(n_sys):
            m = system_idx == b
            out.append(Structure(z[m], pos[m], cell[b if len(cell) > 1 else 0], pbc.copy(),
                                 np.zeros(int(m.sum()), np.int64)))
        return out

    def forward(self, state, **kwargs) -> dict[str, torch.Tensor]:
        structs = self.structures(state)
        if not structs:
            raise ValueError("the state has no atoms")
        props = {"energy"}
        if self._compute_forces:
            props.add("forces")
        if self._compute_stress:
            props.add("stress")
        order = None
        system_idx = state.get("system_idx") if isinstance(state, dict) else state.system_idx
        if system_idx is not None and len(system_idx) > 1 and bool((system_idx[1:] < system_idx[:-1]).any()):
            order = torch.argsort(system_idx.detach().cpu(), stable=True)  # atoms grouped by system
        res = self._predict(structs, props)
        out = {"energy": res["energy"].to(self._dtype)}
        if "forces" in res:
            f = res["forces"].to(self._dtype)
            if order is not None:
                f = torch.empty_like(f).index_copy_(0, order.to(f.device), f)
            out["forces"] = f
        if "stress" in res:
            out["stress"] = res["stress"].to(self._dtype)
        return out

    def _predict(self, structs, props) -> dict[str, torch.Tensor]:
        """Tensors of every system (atoms grouped by system), one model call per head among them."""
        p = self.potential
        groups: dict[str, list[int]] = {}
        for b, s in enumerate(structs):
            groups.setdefault(p.route(s), []).append(b)
        if len(groups) == 1:
            return p.predict_tensors(p.batch(structs), props, head=next(iter(groups)))
        counts = torch.tensor([len(s.numbers) for s in structs])
        starts = torch.cumsum(counts, 0) - counts
        out: dict[str, torch.Tensor] = {}
        for head, systems in groups.items():
            res = p.predict_tensors(p.batch([structs[b] for b in systems]), props, head=head)
            sys_idx = torch.tensor(systems, device=p.device)
            atom_idx = torch.cat([torch.arange(int(starts[b]), int(starts[b] + counts[b])) for b in systems])
            atom_idx = atom_idx.to(p.device)
            for key, value in res.items():
                per_atom = key in ("forces", "energies")
                if key not in out:
                    n = int(counts.sum()) if per_atom else len(structs)
                    out[key] = value.new_zeros((n, *value.shape[1:]))
                out[key].index_copy_(0, atom_idx if per_atom else sys_idx, value)
        return out
