"""The model a run starts from: architecture presets, loading a base model, and copying its weights into a new one.

Shared by ``training.pretrain`` (``model.preset`` / ``model.init_from``) and ``training.finetune`` (``--preset`` /
``--base``), so neither imports the other.
"""

from __future__ import annotations

from jmp_calc import config as jconfig
from jmp_calc.model import JMPModel

from .config import ConfigError

#: the architectures a run can be built from (``model.preset`` in a run config, ``--preset`` of training.finetune)
PRESETS = {"tiny": jconfig.tiny, "jmp_s": jconfig.jmp_s, "jmp_l": jconfig.jmp_l}

#: backbone tensors of the direct-force branch: the only ones a base without that branch may lack
FORCE_KEYS = ("out_mlp_F", "seq_forces", "dense_rbf_F", "scale_rbf_F", "out_forces")


def load_base(base: str):
    """A registry name, released JMP checkpoint or jmp_calc model directory, loaded; a clear ConfigError if not."""
    from jmp_calc.io import CheckpointError, ModelNotAvailableError, load_model

    try:
        return load_model(base)
    except (CheckpointError, ModelNotAvailableError, FileNotFoundError) as exc:
        raise ConfigError(f"--base {base}: {exc}") from None


def transfer_backbone(base: JMPModel, model: JMPModel) -> tuple[int, list[str]]:
    """Copy embedding + backbone weights (and fitted scale factors) of ``base`` into ``model``; returns the number
    of tensors copied and the backbone tensors left at their initial values (only the direct-force branch may be
    missing, when the base had none)."""
    src, dst = base.state_dict(), model.state_dict()
    copy, fresh = {}, []
    for k, v in dst.items():
        if not k.startswith(("embedding.", "backbone.")):
            continue
        if k in src:
            if src[k].shape != v.shape:
                raise ConfigError(f"base model tensor {k} has shape {tuple(src[k].shape)}, the new model "
                                  f"{tuple(v.shape)}: the architectures differ")
            copy[k] = src[k]
        elif any(f in k for f in FORCE_KEYS):
            fresh.append(k)
        else:
            raise ConfigError(f"base model lacks {k}: not the same architecture")
    model.load_state_dict(copy, strict=False)
    return len(copy), fresh


def init_from(base: JMPModel, model: JMPModel, label: str, head_map: dict[str, str] | None = None) -> str:
    """Backbone (and scale factors) of ``base`` into ``model``, plus the energy MLP of each head of the same name
    (or of ``head_map[name]``); returns a one-line summary."""
    n, fresh = transfer_backbone(base, model)
    src, dst = base.state_dict(), model.state_dict()
    copied, new = [], []
    for i, name in enumerate(model.head_names):
        src_name = (head_map or {}).get(name, name)
        if head_map and name in head_map and src_name not in base.head_names:
            raise ConfigError(f"model.init_heads: {label} has no head {src_name!r}; its heads are {base.head_names}")
        j = base.head_names.index(src_name) if src_name in base.head_names else None
        keys = [k for k in dst if k.startswith(f"output.out_energy.{i}.")]
        prefix = f"output.out_energy.{i}."
        pairs = {k: f"output.out_energy.{j}." + k[len(prefix):] for k in keys} if j is not None else {}
        if pairs and all(v in src and src[v].shape == dst[k].shape for k, v in pairs.items()):
            model.load_state_dict({k: src[v] for k, v in pairs.items()}, strict=False)
            copied.append(name if src_name == name else f"{name} <- {src_name}")
        else:
            new.append(name)
    return (f"initialised from {label}: {n} backbone tensors" + (f" ({len(fresh)} force-branch tensors new)" if fresh
            else "") + f"; heads from the base: {copied or 'none'}; new heads: {new or 'none'}")


def default_graph(base: JMPModel | None, periodic: bool) -> dict:
    """The graph rule of the base head that matches the data's periodicity (JMP: 12 A/30 periodic, 8 A molecular).

    ``periodic``: the dataset holds structures periodic in any direction (slabs count). Their rule never says
    ``pbc: false`` (a molecular head's "always open boundaries"): periodic data gets ``pbc`` from each structure,
    even from a base whose only heads are molecular."""
    if base is None:
        return {"cutoff": 12.0, "max_neighbors": 30}
    rule = next((h.graph.to_dict() for h in base.heads if (h.graph.pbc is not False) == periodic),
                base.heads[0].graph.to_dict())
    if periodic and rule.get("pbc") is False:
        rule["pbc"] = None
    return rule


def is_periodic(samples, max_check: int = 1000) -> bool:
    """Whether any of (up to ``max_check`` evenly spread) ``samples`` is periodic in any direction: a dataset of
    slabs (periodic in x and y) and bulk cells is periodic; only all-open data (molecules) is not."""
    import numpy as np

    n = len(samples)
    idx = np.unique(np.linspace(0, n - 1, min(n, max_check)).astype(int)) if n else []
    return any(bool(np.any(samples[int(i)].pbc)) for i in idx)
