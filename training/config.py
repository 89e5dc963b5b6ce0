"""Run configuration: YAML files plus ``key.path=value`` command-line overrides, checked strictly (an unknown or
misspelt key is an error that names it)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from jmp_calc.errors import ConfigError  # one ConfigError for jmp_calc and training

__all__ = ["ConfigError", "DatasetConfig", "ModelConfig", "SamplingConfig", "TrainerConfig", "CardConfig",
           "OptimConfig", "RunConfig", "load_config", "apply_overrides"]


@dataclass
class OptimConfig:
    lr: float = 2e-4
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 100
    warmup_epochs: float | None = None  #: instead of warmup_steps: this many epochs (resolved when the run starts)
    warmup_start_factor: float = 0.2
    min_lr_factor: float = 0.1  #: cosine floor, as a fraction of lr
    cosine: bool = True  #: cosine decay over the run's steps (when they are known)
    cosine_steps: int | None = None  #: length of the cosine (JMP fine-tuning: 32 epochs), then min_lr_factor
    cosine_epochs: float | None = None  #: instead of cosine_steps: this many epochs (resolved when the run starts)
    plateau_patience: int | None = None  #: epochs without val improvement before lr *= plateau_factor
    plateau_factor: float = 0.5
    layer_decay: float | None = None  #: layer-wise lr decay (fine-tuning): block i of B gets lr * d**(B - i)
    #: explicit multipliers instead: {"embedding": 0.3, "blocks": [0.55, 0.40, ...]} (JMP-L fine-tuning)
    layer_multipliers: dict | None = None
    grad_clip: float | None = 10.0
    ema_decay: float | None = 0.99

    def resolved(self, steps_per_epoch: int) -> OptimConfig:
        """The same settings with ``warmup_epochs`` / ``cosine_epochs`` turned into step counts."""
        spe = max(1, int(steps_per_epoch))
        out = dataclasses.replace(self)
        if self.warmup_epochs is not None:
            out.warmup_steps = max(1, int(self.warmup_epochs * spe))
        if self.cosine_epochs is not None:
            out.cosine_steps = int(self.cosine_epochs * spe)
        return out


@dataclass
class DatasetConfig:
    """One dataset of a run: one energy head (+ one head per scalar property) in pre-training, the task of a
    fine-tuning run. ``training.finetune``'s flags and ``--task`` presets fill in exactly these fields."""

    name: str
    train: str | None = None
    val: str | None = None
    test: str | None = None
    format: str | None = None  #: reader name (see training.data.FORMATS); None = from the file suffix
    reader: dict[str, Any] = field(default_factory=dict)  #: extra reader arguments (split=, energy_key=, ...)
    val_reader: dict[str, Any] | None = None  #: reader arguments for val (default: reader), e.g. {split: val}
    # --- splits (training.splits): used when no val file is given
    val_fraction: float = 0.05  #: validation share of the training file (at least one structure)
    val_size: int | None = None  #: validation structures drawn from the training file (instead of val_fraction)
    train_size: int | None = None  #: training structures drawn from the file (default: all but validation); the
    #: rest is the test set when no test file is given
    kfold: int | None = None  #: K-fold cross-validation of the training file (MatBench): fold ``fold`` is the test
    fold: int = 0
    kfold_seed: int = 18012019  #: MatBench's KFold seed
    max_train: int | None = None  #: use a seeded subset of at most this many training structures
    max_val: int | None = None
    #: drop frames (train and val) where any atom's force norm |F| exceeds this (eV/A) at read time, before the
    #: statistics that normalise the loss are fitted; None: keep every frame
    max_abs_force: float | None = None
    #: multiplier of this dataset's temperature-sampling probability (renormalised over the datasets): e.g. 2 draws
    #: a small dataset twice as often as temperature sampling alone would, in a multi-domain fine-tune
    sample_weight: float = 1.0
    #: graph rule of this dataset's heads (jmp_calc.config.GraphConfig fields); keys not given come from the base
    #: model's head of the same periodicity (with model.init_from) or JMP's default (12 A, 30 neighbours)
    graph: dict[str, Any] = field(default_factory=dict)
    set_tags_to: int | str | None = None  #: 2 for molecular datasets (JMP's transform); "auto": 2 unless periodic
    forces: str = "direct"  #: direct | conservative | none
    energy: bool = True  #: train on energies
    stress: bool = False  #: train on stress (conservative forces only)
    #: train (and validate) the forces of atoms held fixed (FixAtoms, OC20's ``fixed``) too. JMP leaves them out
    #: (OC20's convention); a potential for MD or phonons of whole cells needs them (a fixed slab bottom is a surface)
    fixed_atom_forces: bool = False
    energy_weight: float = 1.0
    force_weight: float = 10.0
    stress_weight: float = 1.0
    #: "mae": JMP's losses (L1 of the normalised energy, per-atom L2 norm of the normalised force error, L1 stress);
    #: "mse": the squares of the same normalised errors (per structure, then averaged as for "mae")
    loss: str = "mae"
    reduction: str = "sum"  #: pooling of the energy head
    atom_refs: bool = True  #: fit per-element linear reference energies on the training split
    #: scalar targets: name -> {weight: 1.0, reduction: sum|mean, atom_refs: false}
    properties: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: head names: target ("energy" or a property) -> name; default: the dataset's name for the energy head and
    #: NAME/PROPERTY for properties (the bare property name when the dataset has no energy and one property)
    heads: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        where = f"datasets[{self.name}]"
        if self.forces not in ("direct", "conservative", "none"):
            raise ConfigError(f"{where}.forces must be direct, conservative or none, got {self.forces!r}")
        if self.loss not in ("mae", "mse"):
            raise ConfigError(f"{where}.loss must be mae or mse, got {self.loss!r}")
        if not (self.sample_weight > 0 and math.isfinite(self.sample_weight)):
            raise ConfigError(f"{where}.sample_weight must be a positive number, got {self.sample_weight!r}")
        if self.stress and self.forces != "conservative":
            raise ConfigError(f"{where}.stress needs forces: conservative")
        if not self.energy and (self.forces != "none" or self.stress):
            raise ConfigError(f"{where}: forces and stress are derived from the energy head: set energy: true "
                              "(energy_weight: 0 trains on forces only) or forces: none")
        if self.max_abs_force is not None and not (isinstance(self.max_abs_force, (int, float))
                                                   and self.max_abs_force > 0):
            raise ConfigError(f"{where}.max_abs_force must be a positive number (eV/A) or null, "
                              f"got {self.max_abs_force!r}")
        if self.set_tags_to not in (None, "auto") and not isinstance(self.set_tags_to, int):
            raise ConfigError(f"{where}.set_tags_to must be an integer tag, 'auto' or null, got {self.set_tags_to!r}")
        if not isinstance(self.graph, dict):
            raise ConfigError(f"{where}.graph must be a mapping of GraphConfig fields, got {self.graph!r}")
        unknown = set(self.heads) - {"energy", *self.properties}
        if unknown:
            raise ConfigError(f"{where}.heads names targets this dataset does not have: {sorted(unknown)}")

    def head_name(self, target: str) -> str:
        """The name of the head that predicts ``target`` ("energy" or a property)."""
        if target in self.heads:
            return self.heads[target]
        if target == "energy":
            return self.name
        return target if not self.energy and len(self.properties) == 1 else f"{self.name}/{target}"

    @property
    def targets(self) -> tuple[str, ...]:
        """What the dataset trains: energy, forces, stress and its scalar properties."""
        return tuple(t for t, on in (("energy", self.energy), ("forces", self.forces != "none"),
                                     ("stress", self.stress)) if on) + tuple(self.properties)


@dataclass
class ModelConfig:
    preset: str = "tiny"  #: tiny | jmp_s | jmp_l (jmp_calc.config presets)
    overrides: dict[str, Any] = field(default_factory=dict)  #: GemNetOCConfig fields (emb sizes, edge_dropout...)
    fit_scale_factors_batches: int = 8  #: batches used to fit scale factors of a new model (0: skip)
    #: start from this model (a registry name or model directory, e.g. a pre-trained backbone): its architecture
    #: (``preset`` is ignored; ``overrides`` may still set dropout), backbone weights and scale factors, and the
    #: energy MLP of every head whose name matches a dataset's; the other heads start fresh
    init_from: str | None = None
    #: with init_from: new head name -> the base head whose energy MLP starts it (default: the head of the same name)
    init_heads: dict[str, str] = field(default_factory=dict)
    copy_heads: bool = True  #: with init_from: start heads from the base's energy MLPs (False: backbone only)
    from_scratch: bool = False  #: with init_from: its architecture only, random weights (the scratch baseline)
    #: with init_from: every dataset's energy head starts from this base head (``auto``: the one with the lowest
    #: zero-shot force error on the first training batches), its last layer rescaled to the new head's units and
    #: the per-element references corrected for its zero-shot energies (training.head_transfer); None: as
    #: ``copy_heads`` / ``init_heads`` say (no rescaling)
    head_from: str | None = None


@dataclass
class SamplingConfig:
    temperature: float = 2.0  #: JMP's dataset temperature (1 = proportional to size)
    samples_per_epoch: int | None = None  #: default: the total size of the training sets


@dataclass
class TrainerConfig:
    max_epochs: int = 10
    max_steps: int = -1
    max_time_minutes: float | None = None  #: per process: each --resume chunk gets this budget again
    batch_size: int = 8
    val_batch_size: int | None = None
    num_workers: int = 0
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    precision: str = "auto"  #: auto = bf16-mixed on CUDA, 32-true on CPU
    strategy: str = "auto"
    checkpoint_every_n_steps: int = 50
    val_every_n_epochs: int = 1
    log_every_n_steps: int = 10
    early_stopping_patience: int | None = None  #: epochs without validation improvement
    logger: str = "csv"  #: csv | tensorboard | wandb
    threads: int | None = None  #: torch CPU threads per process
    #: batches whose graphs have at least this many padded slots recompute their activations in backward instead
    #: of keeping them (jmp_calc.model.layers.set_recompute_min_slots). Training batches of small structures stay
    #: below 2**23 and keep everything (a conservative step of configs/mini_s.yaml ~1.8x faster than recomputing,
    #: ~0.2 GB more); lower it when a batch of large cells does not fit in memory. (Configs written before
    #: 2026-12-06 name it recompute_min_elements, counted in padded elements: read as that number / 8, the
    #: channel count the old unit assumed for the default widths.)
    recompute_min_slots: int = 2**23
    #: the model's forward in direct-force training steps through torch.compile (dynamic shapes): True =
    #: inductor, a string = that backend (e.g. "aot_eager" to debug). Conservative steps and validation stay
    #: eager (a compiled graph cannot be differentiated twice). The first steps compile (minutes on one CPU
    #: core; a new graph for a batch that changes a branch, e.g. no periodic structure in it), then the step
    #: is ~1.4x faster on CPU (benchmarks/train_step.py --compile); a failed compile warns once and runs eagerly
    compile: bool | str = False
    progress: bool = True


@dataclass
class CardConfig:
    """What the exported model's card says beyond what the run itself knows (jmp_calc.card.ModelCard)."""

    task: str | None = None  #: one line: what the model does (default: from the datasets)
    level_of_theory: str | None = None  #: of the labels, e.g. "PBE/def2-SVP" or "GFN2-xTB"
    dispersion: bool | None = None  #: the labels include a dispersion correction
    license: str | None = None  #: default: the base model's when its weights are used, else MIT
    #: pre-training heads (the calculator asks for head=); default: when the run has more than one dataset
    pretraining: bool | None = None


@dataclass
class RunConfig:
    name: str
    out: str
    datasets: list[DatasetConfig]
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    card: CardConfig = field(default_factory=CardConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return _build(cls, data, "")


def _build(cls, data, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    if cls is TrainerConfig and "recompute_min_elements" in data:  # the old name and unit (see the field)
        data = dict(data)
        old = data.pop("recompute_min_elements")
        if "recompute_min_slots" not in data:
            data["recompute_min_slots"] = max(1, old // 8) if isinstance(old, int) else old
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(where + k for k in unknown)} "
                          f"(known: {', '.join(sorted(fields))})")
    kwargs = {}
    nested = {"model": ModelConfig, "sampling": SamplingConfig, "optim": OptimConfig, "trainer": TrainerConfig,
              "card": CardConfig}
    for k, v in data.items():
        if cls is RunConfig and k in nested:
            kwargs[k] = _build(nested[k], v or {}, f"{k}.")
        elif cls is RunConfig and k == "datasets":
            if not isinstance(v, list) or not v:
                raise ConfigError("datasets: expected a non-empty list")
            kwargs[k] = [_build(DatasetConfig, d, f"datasets.{i}.") for i, d in enumerate(v)]
        else:
            kwargs[k] = v
    missing = [n for n, f in fields.items() if n not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"missing key{'s' if len(missing) > 1 else ''}: {', '.join(where + m for m in missing)}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from None


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``a.b=value`` (YAML value; list items by index: ``datasets.0.train=x.extxyz``)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not KEY=VALUE")
        key, value = item.split("=", 1)
        node, parts = data, key.split(".")
        for p in parts[:-1]:
            if isinstance(node, list):
                try:
                    node = node[int(p)]
                except (ValueError, IndexError):
                    raise ConfigError(f"override {key}: no list item {p!r}") from None
            else:
                node = node.setdefault(p, {})
        last = parts[-1]
        parsed = yaml.safe_load(value) if value != "" else None
        if isinstance(node, list):
            node[int(last)] = parsed
        else:
            node[last] = parsed
    return data


def load_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    base = path.parent
    cfg = RunConfig.from_dict(apply_overrides(data, list(overrides)))
    for d in cfg.datasets:  # relative data paths are relative to the config file
        for k in ("train", "val", "test"):
            v = getattr(d, k)
            if v and not Path(v).is_absolute() and not Path(v).exists() and (base / v).exists():
                setattr(d, k, str(base / v))
    v = cfg.model.init_from
    if v and not Path(v).is_absolute() and not Path(v).exists() and (base / v).exists():
        cfg.model.init_from = str(base / v)
    return cfg
