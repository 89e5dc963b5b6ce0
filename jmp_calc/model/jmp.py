"""A JMP model: atom embedding + GemNet-OC backbone + one energy (and direct-force) head per dataset."""

from __future__ import annotations

import torch
from torch import nn

from ..card import ModelCard
from ..config import GemNetOCConfig, HeadConfig, pretraining_heads
from .backbone import GemNetOCBackbone
from .layers import head_mlp

__all__ = ["AtomEmbedding", "Heads", "JMPModel", "build_pretraining_model"]


class AtomEmbedding(nn.Module):
    """Learned vector per element; row ``Z - 1`` (``atom_embedding.weight``)."""

    def __init__(self, num_elements: int, size: int):
        super().__init__()
        self.atom_embedding = nn.Embedding(num_elements, size)

    def forward(self, numbers: torch.Tensor) -> torch.Tensor:
        return self.atom_embedding(numbers - 1)


class Heads(nn.Module):
    """Per-head MLPs: energy from per-atom features (pooled per structure), direct forces from per-edge scalars
    times unit vectors, summed onto target atoms."""

    def __init__(self, cfg: GemNetOCConfig, heads: list[HeadConfig]):
        super().__init__()
        self.out_energy = nn.ModuleList([head_mlp(cfg.emb_size_atom, h.num_mlps, cfg.activation) for h in heads])
        force_heads = [h for h in heads if h.direct_forces]
        if force_heads and len(force_heads) != len(heads):
            raise ValueError("either every head or no head has direct forces")
        if force_heads and not cfg.direct_forces:
            raise ValueError("direct-force heads need a backbone with direct_forces=True")
        self.out_forces = nn.ModuleList([head_mlp(cfg.emb_size_edge, h.num_mlps, cfg.activation)
                                         for h in force_heads])


class JMPModel(nn.Module):
    """``forward(batch)`` returns model-unit outputs of the requested heads:

    * ``energy`` (B, H): per-structure energies (sum or mean of per-atom outputs),
    * ``forces`` (N, 3, H): direct forces (when the heads have them),
    * ``node_energy`` (N, H) and the backbone features when ``return_features`` is set.
    """

    def __init__(self, config: GemNetOCConfig, heads: list[HeadConfig], card: ModelCard | None = None):
        super().__init__()
        if not heads:
            raise ValueError("a JMPModel needs at least one head")
        names = [h.name for h in heads]
        if len(set(names)) != len(names):
            raise ValueError(f"head names must be unique, got {names}")
        self.config = config
        self.heads = list(heads)
        #: the model card (:class:`~jmp_calc.card.ModelCard`; empty for a model built in code)
        self.card = ModelCard() if card is None else card
        self.card.check_heads(names)
        self.embedding = AtomEmbedding(config.num_elements, config.emb_size_atom)
        self.backbone = GemNetOCBackbone(config)
        self.output = Heads(config, heads)

    @property
    def head_names(self) -> list[str]:
        return [h.name for h in self.heads]

    def head_index(self, name: str | int) -> int:
        if isinstance(name, int):
            if not 0 <= name < len(self.heads):
                raise ValueError(f"head index {name} out of range; this model has heads {self.head_names} "
                                 f"(indices 0..{len(self.heads) - 1})")
            return name
        try:
            return self.head_names.index(name)
        except ValueError:
            raise ValueError(f"unknown head {name!r}; this model has heads {self.head_names}") from None

    def forward(self, g, heads: list[int] | None = None, pos: torch.Tensor | None = None,
                cell: torch.Tensor | None = None, return_features: bool = False, direct_forces: bool = True) -> dict:
        """``heads``: indices of the heads to evaluate (default all); ``direct_forces=False`` skips the force
        branch (energies only, e.g. for conservative forces)."""
        heads = list(range(len(self.heads))) if heads is None else heads
        h = self.embedding(g.numbers)
        out = self.backbone(h, g, pos=pos, cell=cell, forces=direct_forces)
        x_e = out["energy_features"]
        n_struct = g.num_structures
        node_e = torch.cat([self.output.out_energy[i](x_e) for i in heads], dim=1)  # (N, H)
        energy = node_e.new_zeros((n_struct, len(heads))).index_add_(0, g.batch, node_e)
        mean_heads = [j for j, i in enumerate(heads) if self.heads[i].reduction == "mean"]
        if mean_heads:
            energy[:, mean_heads] = energy[:, mean_heads] / g.natoms.to(energy.dtype)[:, None]
        result = {"energy": energy}
        if "force_features" in out and len(self.output.out_forces):
            x_f = out["force_features"]
            f_st = torch.cat([self.output.out_forces[i](x_f) for i in heads], dim=1)  # (E, H)
            vec = f_st[:, None, :] * out["unit_vector"][:, :, None]  # (E, 3, H)
            forces = vec.new_zeros((g.pos.shape[0], 3, len(heads))).index_add_(0, g.main.index[1], vec)
            result["forces"] = forces
            if return_features:
                result["edge_force_scalar"] = f_st
        if return_features:
            result.update(node_energy=node_e, atom_embedding=h, energy_features=x_e,
                          distance=out["distance"], unit_vector=out["unit_vector"])
        return result


def build_pretraining_model(config: GemNetOCConfig) -> JMPModel:
    """The backbone with JMP's four pre-training heads (OC20, OC22, ANI-1x, Transition-1x)."""
    return JMPModel(config, pretraining_heads())
