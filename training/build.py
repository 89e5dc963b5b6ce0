"""The one build path of a training run, shared by ``training.pretrain`` (a YAML run config) and
``training.finetune`` (its flags mapped onto the same :class:`~training.config.RunConfig`):

data (read, cleaned, split: :mod:`training.splits`) -> normalisation statistics -> heads -> :class:`Task` records ->
the model (a preset architecture, or a base model's, with its backbone weights unless ``model.from_scratch``), and
the model card the export will carry.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field

import numpy as np

from jmp_calc import config as jconfig
from jmp_calc.config import GraphConfig, HeadConfig
from jmp_calc.model import JMPModel

from .base_model import PRESETS, default_graph, init_from, is_periodic, load_base, transfer_backbone
from .config import ConfigError, DatasetConfig, RunConfig
from .data.base import DataError
from .splits import Splits, load_splits, subset
from .task import Task

__all__ = ["TrainingRun", "build_run", "dataset_stats", "heads_for", "model_card", "model_readme"]


@dataclass
class TrainingRun:
    """Everything a run trains: the model with its heads, one :class:`Task` and one :class:`Splits` per dataset."""

    cfg: RunConfig
    model: JMPModel
    tasks: list[Task]
    splits: list[Splits]
    property_names: list[str]
    base: JMPModel | None = None  #: the model of ``model.init_from``
    pretrained: bool = False  #: the base's weights were copied (else: random weights; scale factors get fitted)
    notes: list[str] = field(default_factory=list)

    @property
    def train_sets(self) -> list:
        return [s.train for s in self.splits]

    @property
    def val_sets(self) -> list:
        return [s.val for s in self.splits]


def build_run(cfg: RunConfig, *, base: JMPModel | None = None, log=print) -> TrainingRun:
    """Datasets, heads, tasks and model of a run. ``base``: the already loaded model of ``cfg.model.init_from``
    (loaded here when not given)."""
    import lightning.pytorch as pl

    m = cfg.model
    if m.init_from:
        base = base if base is not None else load_base(m.init_from)
    elif m.preset not in PRESETS:
        raise ConfigError(f"model.preset must be one of {sorted(PRESETS)}, got {m.preset!r}")
    elif m.from_scratch:
        raise ConfigError("model.from_scratch needs model.init_from (the model whose architecture to use)")
    kinds = {d.forces for d in cfg.datasets} - {"none"}
    if len(kinds) > 1:
        raise ConfigError("the datasets mix direct and conservative forces; use one kind for every dataset")
    direct = kinds == {"direct"}
    names = [d.name for d in cfg.datasets]
    if len(set(names)) != len(names):
        raise ConfigError(f"dataset names must be unique, got {names}")

    heads: list[HeadConfig] = []
    tasks, splits, props = [], [], []
    for d in cfg.datasets:
        sp = load_splits(d, cfg.seed, log=log)
        if len(sp.train) == 0 or len(sp.val) == 0:
            raise ConfigError(f"datasets[{d.name}]: empty training ({len(sp.train)}) or validation "
                              f"({len(sp.val)}) set")
        first = sp.train[0]
        for label in ("energy", "forces"):
            if label in d.targets and getattr(first, label) is None:
                raise DataError(f"{first.source or d.train}: no {label} (dataset {d.name} trains on "
                                f"{', '.join(d.targets)})")
        # any periodic direction counts (slabs): ``all(first.pbc)`` took a slab-first dataset of slabs and bulk
        # cells for molecules, inherited the molecular head's pbc: false, and trained every slab and bulk cell as
        # an open cluster (no images: bulk stress untrainable, slab forces ~3x worse; found 2026-12-03)
        periodic = is_periodic(sp.train)
        graph = GraphConfig.from_dict({**default_graph(base, periodic), **d.graph})
        if periodic and graph.pbc is False:
            log(f"warning: dataset {d.name} holds periodic structures but its graph rule says pbc: false; they "
                "are treated as open clusters (no periodic images)")
        tags = (None if periodic else 2) if d.set_tags_to == "auto" else d.set_tags_to
        stats = dataset_stats(d, sp.train, seed=cfg.seed)
        _warn_unreferenced_elements(d, stats, sp, log)
        first_head = len(heads)
        new = heads_for(d, stats, direct, graph, tags)
        has_energy = "energy" in stats
        prop_heads = {p: (first_head + int(has_energy) + i, float(d.properties[p].get("weight", 1.0)))
                      for i, p in enumerate(stats["properties"])}
        heads += new
        props += [p for p in prop_heads if p not in props]
        tasks.append(Task(name=d.name, graph=graph, set_tags_to=tags, head=first_head if has_energy else None,
                          energy=d.energy, forces=d.forces if has_energy else "none", stress=d.stress,
                          fixed_atom_forces=d.fixed_atom_forces,
                          energy_weight=d.energy_weight if d.energy else 0.0, force_weight=d.force_weight,
                          stress_weight=d.stress_weight if d.stress else 0.0, loss=d.loss,
                          properties=prop_heads))
        splits.append(sp)
        log(f"dataset {d.name}: {len(sp.train)} train / {len(sp.val)} val"
            + (f" / {len(sp.test)} test" if sp.test is not None else "") + " structures; "
            + (f"energy std {stats['energy']['std']:.4g} eV, " if has_energy else "")
            + (f"force rms {stats['force_rms']:.4g} eV/A" if "force_rms" in stats else ""))

    try:
        arch = dict(m.overrides, direct_forces=direct)
        backbone = dataclasses.replace(base.config, **arch) if base is not None else PRESETS[m.preset](**arch)
    except (TypeError, jconfig.ConfigError) as exc:
        raise ConfigError(f"model.overrides: {exc}") from None
    pl.seed_everything(cfg.seed, verbose=False)  # initial weights: a function of the seed, wherever the base loaded
    model = JMPModel(backbone, heads)
    pretrained = base is not None and not m.from_scratch
    if pretrained and m.copy_heads:
        notes = [init_from(base, model, m.init_from, m.init_heads)]
    elif pretrained:
        n_copied, fresh = transfer_backbone(base, model)
        notes = [f"backbone from {m.init_from}: {n_copied} tensors copied"
                 + (f", {len(fresh)} force-branch tensors new" if fresh else "")]
    else:
        notes = ["random initial weights (from scratch)" + (f", architecture of {m.init_from}" if base else "")]
    for line in notes:
        log(line)
    return TrainingRun(cfg, model, tasks, splits, props, base=base, pretrained=pretrained, notes=notes)


def _warn_unreferenced_elements(d: DatasetConfig, stats: dict, sp, log, max_check: int = 5000) -> None:
    """Say so when validation or test structures hold elements the training split lacks: their fitted per-element
    reference energy is missing (0), so the energies of those structures are off by roughly an atom's energy."""
    refs = stats.get("energy", {}).get("atom_refs") or {}
    if not refs:
        return
    for split_name, split in (("validation", sp.val), ("test", sp.test)):
        if split is None:
            continue
        seen = {int(z) for i in range(min(len(split), max_check)) for z in split[i].numbers}
        extra = sorted(seen - {int(z) for z in refs})
        if extra:
            log(f"warning: dataset {d.name}: its {split_name} set has elements the training split lacks "
                f"(Z = {', '.join(map(str, extra))}); no reference energy is fitted for them, so energies of those "
                "structures will be off")


def dataset_stats(d: DatasetConfig, train, max_samples: int = 20000, seed: int = 0) -> dict:
    """Per-element linear references of the energy (and of reference-fitted properties), the std of the referenced
    energy per structure (JMP normalises by it), and the RMS force component: fitted on (a subset of) train."""
    sub = subset(train, max_samples, seed)
    items = [sub[i] for i in range(len(sub))]
    out: dict = {"n_train": len(train)}
    if d.energy and any(s.energy is not None for s in items):
        labelled = [s for s in items if s.energy is not None]
        refs = _refs(labelled) if d.atom_refs else {}
        resid = np.array([s.energy - sum(refs.get(int(z), 0.0) for z in s.numbers) for s in labelled])
        if d.reduction == "mean":
            resid = resid / np.array([len(s) for s in labelled])
        out["energy"] = {"atom_refs": refs, "mean": 0.0 if d.atom_refs else float(resid.mean()),
                         "std": float(max(np.sqrt(np.mean((resid - (0 if d.atom_refs else resid.mean())) ** 2)),
                                          1e-3))}
    forces = [s.forces for s in items if s.forces is not None]
    if forces:
        f = np.concatenate([np.asarray(x).reshape(-1) for x in forces])
        out["force_rms"] = float(max(np.sqrt(np.mean(f**2)), 1e-3))
    props = {}
    for p, spec in d.properties.items():
        vals = [(s, s.properties[p]) for s in items if p in s.properties and np.isfinite(s.properties[p])]
        if not vals:
            raise ConfigError(f"datasets[{d.name}]: no training structure has property {p!r}")
        refs = {}
        if spec.get("atom_refs", False):
            refs = _refs([s for s, _ in vals], key=p)
        y = np.array([v - sum(refs.get(int(z), 0.0) for z in s.numbers) for s, v in vals])
        props[p] = {"atom_refs": refs, "mean": float(y.mean()) if not refs else 0.0,
                    "std": float(max(y.std(), 1e-6))}
    out["properties"] = props
    return out


def heads_for(d: DatasetConfig, stats: dict, direct: bool, graph: GraphConfig,
              set_tags_to: int | None) -> list[HeadConfig]:
    """The heads of one dataset: its energy (+ forces) head, then one head per scalar property."""
    heads = []
    if "energy" in stats:
        e = stats["energy"]
        heads.append(HeadConfig(name=d.head_name("energy"), energy_std=e["std"], energy_mean=e["mean"],
                                force_std=stats.get("force_rms", e["std"]), reduction=d.reduction, graph=graph,
                                direct_forces=direct, atom_refs=e["atom_refs"] or None, set_tags_to=set_tags_to))
    for p, st in stats["properties"].items():
        heads.append(HeadConfig(name=d.head_name(p), energy_std=st["std"], energy_mean=st["mean"],
                                reduction=d.properties[p].get("reduction", "sum"), graph=graph,
                                direct_forces=direct, atom_refs=st["atom_refs"] or None, set_tags_to=set_tags_to))
    return heads


def _refs(samples, key: str = "energy") -> dict[int, float]:
    """Linear per-element references; a single composition (one molecule's MD) makes them non-unique, which is
    fine: only their sum is used then."""
    from .data.stats import fit_atom_refs

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "fit_atom_refs: element counts have rank", RuntimeWarning)
        return fit_atom_refs(samples, key=key)


def _is_pretraining(run: TrainingRun) -> bool:
    flag = run.cfg.card.pretraining
    return len(run.cfg.datasets) > 1 if flag is None else bool(flag)


def model_card(run: TrainingRun) -> dict:
    """The card fields the run knows before training (``training.runner.fit`` adds epochs and metrics)."""
    cfg, c = run.cfg, run.cfg.card
    pretraining = _is_pretraining(run)
    base_license = (getattr(run.base, "source", None) or {}).get("license") if run.pretrained else None
    elements = sorted({int(z) for sp in run.splits for i in range(min(len(sp.train), 5000))
                       for z in sp.train[i].numbers})
    energy_heads = [(d, run.model.heads[t.head].name) for d, t in zip(cfg.datasets, run.tasks) if t.head is not None]
    if run.pretrained:
        origin = f"pre-training continued from {cfg.model.init_from}" if pretraining else \
            f"fine-tuned from {cfg.model.init_from}"
    else:
        origin = "scratch"
    single = cfg.datasets[0] if len(cfg.datasets) == 1 else None
    task = c.task or ("multi-task pre-training (one energy/force head per dataset)" if pretraining
                      else f"trained on {single.train}" if single else "multi-task training")
    units = {"energy": "eV", "forces": "eV/A"}
    if any(d.stress for d in cfg.datasets):
        units["stress"] = "eV/A^3"
    return {
        "name": cfg.name, "task": task, "targets": list(dict.fromkeys(t for d in cfg.datasets for t in d.targets)),
        "level_of_theory": c.level_of_theory, "dispersion": c.dispersion, "units": units, "elements": elements,
        "graph": run.tasks[0].graph.to_dict() if single else None,
        "forces": {name: d.forces for d, name in energy_heads if d.forces != "none"},
        "default_head": None if pretraining else run.model.heads[0].name, "pretraining": pretraining,
        "license": c.license or base_license or "MIT", "training_data": [d.name for d in cfg.datasets],
        "base_model": cfg.model.init_from if run.pretrained else None, "trained_from": origin,
        "n_train": sum(len(s.train) for s in run.splits), "n_valid": sum(len(s.val) for s in run.splits),
        "seed": cfg.seed, "notes": list(run.notes),
    }


def model_readme(run: TrainingRun, card: dict, out) -> str:
    """The README.md of the exported model directory."""
    n_params = sum(p.numel() for p in run.model.parameters())
    heads = ", ".join(h.name for h in run.model.heads)
    use = ("Use a head zero-shot with `JMPCalculator(path, head=NAME)` or fine-tune it with "
           "`python -m training.finetune --base`." if card["pretraining"] else f"Use: `JMPCalculator(\"{out}\")`.")
    lot = f" ({card['level_of_theory']})" if card.get("level_of_theory") else ""
    return (f"# {card['name']}\n\nGemNet-OC ({n_params:,} parameters), {card['trained_from']}, trained on "
            f"{', '.join(card['training_data'])} ({card['n_train']} structures{lot}); heads: {heads}.\n\n{use}\n")
