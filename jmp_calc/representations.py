"""Per-structure representations from the backbone (for t-SNE / similarity plots)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["embed"]


def embed(atoms_list, model=None, *, head=None, batch_size: int = 32, dtype: str = "float32",
          device: str = "auto") -> np.ndarray:
    """Mean over atoms of the backbone's final per-atom energy features: an (n_structures, emb_size_atom) array.

    ``model``: anything :func:`jmp_calc.load_model` accepts, or a :class:`~jmp_calc.JMPCalculator`; the graph
    settings are those of each structure's head (``head``: one for all; default: the model's head choice).
    """
    from .calculator import JMPCalculator
    from .graph.structures import as_structure
    from .potential import Potential

    if isinstance(model, JMPCalculator):
        pot = model.potential
    else:
        from .io import load_model

        pot = Potential(load_model(model), head=head, dtype=dtype, device=device)
    structures = [as_structure(a) for a in atoms_list]
    out = np.zeros((len(structures), pot.model.config.emb_size_atom))
    groups: dict[str, list[int]] = {}  # the graphs follow each structure's head: one batch per head
    for i, s in enumerate(structures):
        groups.setdefault(pot.route(s), []).append(i)
    for idx_all in groups.values():
        for k in range(0, len(idx_all), batch_size):
            idx = idx_all[k:k + batch_size]
            g = pot.batch([structures[i] for i in idx])
            with torch.inference_mode():
                h = pot.model.embedding(g.numbers)
                feats = pot.model.backbone(h, g, forces=False)["energy_features"]
                sums = feats.new_zeros((g.num_structures, feats.shape[1])).index_add_(0, g.batch, feats)
                out[idx] = (sums / g.natoms[:, None].to(feats.dtype)).double().cpu().numpy()
    return out
