"""Loading the released JMP pre-training checkpoints (``jmp-s.pt``, ``jmp-l.pt``: PyTorch Lightning files).

Layout (see shared/fixtures/README.md): ``state_dict`` with prefixes ``embedding.``, ``backbone.``, ``output.``,
``task_steps.``; ``hyper_parameters`` = the JMP ``PretrainConfig`` as nested dicts; EMA weights in
``optimizer_states[0]["ema"]`` as a tuple in ``model.parameters()`` order.

Our model keeps one copy of every tensor, so three kinds of checkpoint keys are checked and then dropped rather
than loaded: ``*.seq_energy_pre.*`` (aliases of ``*.layers.*``), ``*rbf.offset`` / ``*rbf.temps`` (constant basis
buffers, must equal ours) and ``task_steps.*`` (training counters). Everything else loads strictly.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..card import ModelCard
from ..config import ConfigError, GemNetOCConfig, GraphConfig, HeadConfig
from ..model.bases import GaussianRBF
from ..model.jmp import JMPModel
from .safe_load import CheckpointError, safe_torch_load, to_plain

__all__ = ["load_jmp_checkpoint", "is_jmp_checkpoint", "JMP_LICENSE", "ema_parameter_keys"]

JMP_LICENSE = "CC-BY-NC 4.0 (Meta Platforms; the released JMP weights are for non-commercial use only)"

#: graph rules hard-coded per pre-training task in the original code
_TASK_GRAPHS = {
    "oc20": dict(cutoff=12.0, pbc=None, tags=None),
    "oc22": dict(cutoff=12.0, pbc=None, tags=None),
    "ani1x": dict(cutoff=8.0, pbc=False, tags=2),
    "transition1x": dict(cutoff=8.0, pbc=False, tags=2),
}


def _is_alias(key: str) -> bool:
    return ".seq_energy_pre." in key


def _is_rbf_buffer(key: str) -> bool:
    return key.endswith("rbf.offset") or key.endswith("rbf.temps")


def ema_parameter_keys(state_dict_keys) -> list[str]:
    """The order of ``optimizer_states[0]["ema"]``: parameters in state-dict order (JMP's own rule)."""
    return [k for k in state_dict_keys
            if not (_is_rbf_buffer(k) or _is_alias(k) or k.startswith("task_steps") or k.endswith("scale_factor"))]


def is_jmp_checkpoint(obj) -> bool:
    return isinstance(obj, dict) and "state_dict" in obj and "hyper_parameters" in obj


def _heads_from_hparams(hp: dict) -> list[HeadConfig]:
    tasks = hp.get("tasks")
    if not tasks:
        raise CheckpointError("checkpoint hyper_parameters have no 'tasks' (is this a JMP pre-training checkpoint?)")
    num_mlps = int((hp.get("output") or {}).get("num_mlps", 5))
    heads = []
    for task in tasks:
        name = task["name"]
        norm = task.get("normalization") or {}
        y = norm.get("y") or {"mean": 0.0, "std": 1.0}
        f = norm.get("force") or {"mean": 0.0, "std": 1.0}
        if float(f.get("mean", 0.0)) != 0.0:
            raise CheckpointError(f"task {name!r} has a non-zero force normalisation mean, which is not supported")
        rules = _TASK_GRAPHS.get(name)
        if rules is None:
            warnings.warn(f"unknown JMP task {name!r}: using a 12 A graph with periodicity from the structure",
                          stacklevel=3)
            rules = dict(cutoff=12.0, pbc=None, tags=None)
        heads.append(HeadConfig(
            name=name, energy_std=float(y["std"]), energy_mean=float(y.get("mean", 0.0)), force_std=float(f["std"]),
            reduction=task.get("node_energy_reduction", "sum"), num_mlps=num_mlps,
            graph=GraphConfig(cutoff=rules["cutoff"], max_neighbors=30, pbc=rules["pbc"]),
            set_tags_to=rules["tags"],
        ))
    return heads


def load_jmp_checkpoint(path: str | Path, *, ema: bool = True, strict: bool = True) -> JMPModel:
    """Build a :class:`JMPModel` from an original JMP Lightning checkpoint, without executing pickled code.

    ``ema=True`` uses the exponential-moving-average weights when the file has them (as JMP's fine-tuning does);
    buffers and scale factors always come from ``state_dict``, and so do the energy layers of the output blocks
    (``out_blocks.*.layers``), exactly as in the original loader (see the comment in the code).
    """
    path = Path(path)
    ckpt = safe_torch_load(path)
    if not is_jmp_checkpoint(ckpt):
        keys = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not a JMP Lightning checkpoint (no state_dict/hyper_parameters; has {keys})")
    hp = to_plain(ckpt["hyper_parameters"])
    try:
        backbone = dict(hp["backbone"])
        if hp.get("edge_dropout") is not None and backbone.get("edge_dropout") is None:
            backbone["edge_dropout"] = hp["edge_dropout"]
        config = GemNetOCConfig.from_jmp_hparams(backbone)
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: cannot read the backbone config from hyper_parameters ({exc})") from None
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    heads = _heads_from_hparams(hp)
    # pre-training heads: zero-shot use needs an explicit head= (the calculator asks for one and warns)
    card = ModelCard(name=path.stem, pretraining=True, license=JMP_LICENSE, source=str(path),
                     forces={h.name: "direct" if h.direct_forces else "conservative" for h in heads})
    model = JMPModel(config, heads, card=card)

    state = dict(ckpt["state_dict"])
    rbf = GaussianRBF(config.num_radial, config.absolute_rbf_cutoff)
    expected = {"offset": rbf.offset, "temps": rbf.temps}
    clean = {}
    for key, value in state.items():
        if key.startswith("task_steps"):
            continue
        if _is_alias(key):
            original = key.replace(".seq_energy_pre.", ".layers.")
            if original not in state or not torch.equal(state[original], value):
                raise CheckpointError(f"{path}: {key} should be an alias of {original} but differs")
            continue
        if _is_rbf_buffer(key):
            ref = expected[key.rsplit(".", 1)[1]]
            if value.shape != ref.shape or not torch.allclose(value.float(), ref, rtol=1e-6, atol=1e-6):
                raise CheckpointError(f"{path}: radial basis buffer {key} differs from GemNet-OC's Gaussian basis")
            continue
        clean[key] = value
    if ema:
        opt_states = ckpt.get("optimizer_states") or []
        ema_tensors = opt_states[0].get("ema") if opt_states and isinstance(opt_states[0], dict) else None
        if ema_tensors is None:
            warnings.warn(f"{path.name} has no EMA weights; using the raw weights", stacklevel=2)
        else:
            names = ema_parameter_keys(state.keys())
            if len(names) != len(ema_tensors):
                raise CheckpointError(f"{path}: {len(ema_tensors)} EMA tensors for {len(names)} parameters")
            for name, tensor in zip(names, ema_tensors):
                if tuple(tensor.shape) != tuple(state[name].shape):
                    raise CheckpointError(f"{path}: EMA tensor for {name} has shape {tuple(tensor.shape)}, "
                                          f"expected {tuple(state[name].shape)}")
                clean[name] = tensor
            # The original loader also loads the *raw* ``seq_energy_pre`` aliases, after (and over) the EMA values
            # of ``out_blocks.*.layers``: that module therefore keeps its raw weights. We reproduce this so that
            # released checkpoints give exactly the numbers of the original code.
            for key, value in state.items():
                if _is_alias(key):
                    clean[key.replace(".seq_energy_pre.", ".layers.")] = value

    missing, unexpected = model.load_state_dict(clean, strict=False)
    if strict and (missing or unexpected):
        raise CheckpointError(f"{path}: state_dict does not match the architecture in its hyper_parameters: "
                              f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                              f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    model.eval()
    model.source = {"format": "jmp-lightning", "path": str(path), "ema": bool(ema),
                    "global_step": ckpt.get("global_step"), "license": JMP_LICENSE}
    return model
