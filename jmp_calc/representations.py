"""Per-structure representations from the backbone (for t-SNE / similarity plots)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["embed"]


def embed(atoms_list, model=None, *, head=None, batch_size: int = 32, dtype: str = "float32",
          device: str = "auto") -> np.ndarray:
    """Mean over atoms of the backbone's final per-atom energy features: an (n_structures, emb_size_atom) array.

    ``model``: anything :func:`jmp_calc.load_model` accepts, or a :class:`~jmp_calc.JMPCalculator`; the graph
    settings are those of ``head`` (default: the model's default head).
    """
    from .calculator import JMPCalculator
    from .routing import make_potential

    if isinstance(model, JMPCalculator):
        pot = model.potential
    else:
        from .io import load_model

        pot = make_potential(load_model(model), head=head, dtype=dtype, device=device)
    out = []
    atoms_list = list(atoms_list)
    for k in range(0, len(atoms_list), batch_size):
        g = pot.batch(atoms_list[k:k + batch_size])
        with torch.inference_mode():
            h = pot.model.embedding(g.numbers)
            feats = pot.model.backbone(h, g, forces=False)["energy_features"]
            sums = feats.new_zeros((g.num_structures, feats.shape[1])).index_add_(0, g.batch, feats)
            out.append((sums / g.natoms[:, None].to(feats.dtype)).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, pot.model.config.emb_size_atom))
