"""From a head's model units to eV: the one conversion, used by the calculator's :class:`~jmp_calc.potential.Potential`
and by the trainer's loss (``training.module``).

A head predicts a normalised energy ``y`` (JMP's per-dataset normalisation, fitted on its training set):

    E = energy_std * y + energy_mean + sum_i ref[Z_i]     (eV; y: the sum, or for "mean" pooling the mean, of the
                                                           head's per-atom outputs)
    F = force_std * f                                     (eV/A; direct force heads)

where ``ref`` are the head's per-element linear reference energies (zeros where it has none). Conservative forces
and stress are derivatives of ``E`` itself, so they need no conversion of their own.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .config import HeadConfig

__all__ = ["HeadUnits", "atom_ref_table"]


def atom_ref_table(refs: dict[int, float], num_elements: int, dtype=torch.float64) -> torch.Tensor:
    """Per-element reference energies (eV) as a table indexed by atomic number (zeros for other elements)."""
    table = torch.zeros(num_elements + 1, dtype=dtype)
    for z, e in refs.items():
        if 0 < z <= num_elements:
            table[z] = e
    return table


class HeadUnits(torch.nn.Module):
    """The normalisation constants of a list of heads as tensors (buffers, not saved in a state dict: they live in
    the heads' configs), and the conversions of outputs of one head per structure to eV."""

    def __init__(self, heads: Sequence[HeadConfig], num_elements: int, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.register_buffer("energy_std", torch.tensor([h.energy_std for h in heads], dtype=dtype), False)
        self.register_buffer("energy_mean", torch.tensor([h.energy_mean for h in heads], dtype=dtype), False)
        self.register_buffer("force_std", torch.tensor([h.force_std for h in heads], dtype=dtype), False)
        self.register_buffer("per_atom", torch.tensor([h.reduction == "mean" for h in heads]), False)
        self.register_buffer("refs", torch.stack([atom_ref_table(h.atom_refs or {}, num_elements, dtype)
                                                  for h in heads]), False)  # (H, Z + 1) eV

    def energy(self, y: torch.Tensor, heads: torch.Tensor, batch: torch.Tensor, numbers: torch.Tensor
               ) -> torch.Tensor:
        """eV per structure from ``y`` (B,), the output of head ``heads[b]`` for structure ``b``; ``batch`` (N,)
        maps atoms to structures, ``numbers`` (N,) their atomic numbers."""
        y = y.to(self.energy_std.dtype)
        ref = y.new_zeros(y.shape[0]).index_add_(0, batch, self.refs[heads[batch], numbers])
        return y * self.energy_std[heads] + self.energy_mean[heads] + ref

    def node_energy(self, y_node: torch.Tensor, heads: torch.Tensor, batch: torch.Tensor, numbers: torch.Tensor,
                    natoms: torch.Tensor) -> torch.Tensor:
        """eV per atom from the per-atom outputs ``y_node`` (N,) whose sum (or mean) is ``y``: they add up to
        :meth:`energy` (the mean and the references spread over the atoms)."""
        y_node = y_node.to(self.energy_std.dtype)
        h = heads[batch]
        e = y_node * self.energy_std[h]
        n = natoms[batch].to(e.dtype)
        e = torch.where(self.per_atom[h], e / n, e)
        return e + self.energy_mean[h] / n + self.refs[h, numbers]

    def forces(self, f: torch.Tensor, heads: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """eV/A from the direct-force output ``f`` (N, 3) of head ``heads[b]`` for the atoms of structure ``b``."""
        return f.to(self.force_std.dtype) * self.force_std[heads[batch]][:, None]
