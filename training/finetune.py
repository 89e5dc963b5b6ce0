"""Fine-tune a (pre-trained) GemNet-OC on your data, or train the same architecture from scratch.

    python -m training.finetune --base BASE --train TRAIN.extxyz --valid VALID.extxyz --out DIR \\
        [--targets energy,forces] [--epochs N] [--max-time MINUTES] [--from-scratch] [--seed S] \\
        [--batch-size B] [--lr LR]
    python -m training.finetune --task rmd17-aspirin --data-dir DATA --base jmp-s --out DIR
    python -m training.finetune --list-tasks

BASE: a registry name (``jmp-s``), a released JMP checkpoint (``jmp-s.pt``), or a jmp_calc model directory (e.g.
the ``model/`` of a ``training.pretrain`` run). The backbone and atom embeddings come from BASE; new heads are
made for the targets: ``energy`` (with per-element linear references fitted on TRAIN), ``forces`` (conservative
= -dE/dx by default, or ``--forces direct``), ``stress`` (conservative only) and any scalar property stored in the
structures' ``info`` (pooled with ``--pooling sum|mean``). The energy head starts from the base head that predicts
TRAIN best before any training (``--head-from auto``, rescaled to the new units, references corrected:
training.head_transfer; ``--head-from new`` for random weights). Defaults (docs/finetune_recipe.md): lr 3e-4 with
a head from the base, 3e-3 from scratch or with a new head, warm-up over 5 % of the run then cosine to 0.1 lr,
ReduceLROnPlateau, gradient clipping, early stopping (patience 20 epochs), no EMA, no dropout, no layer decay
(``--layer-decay`` for geometric; released JMP checkpoints keep JMP's per-block table and new heads); the exported
model is the best-validation checkpoint.
``--from-scratch`` uses random weights for the same architecture, everything else equal: the baseline.

Writes ``DIR/model/`` (model.safetensors + config.json + README.md card; ``JMPCalculator(DIR/"model")``),
``DIR/metrics.csv`` (train/valid MAE of every target per epoch) and ``DIR/learning_curve.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .base_model import load_base
from .config import (
    CardConfig,
    ConfigError,
    DatasetConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    SamplingConfig,
    TrainerConfig,
    apply_overrides,
)
from .data.base import DataError
from .module import TrainingError
from .run import execute
from .runner import check_output_dir, describe_weights

#: fine-tuning defaults for our (mini) models, chosen by measurement: docs/finetune_recipe.md
DEFAULT_LR = 3e-3  #: from scratch, and pre-trained with a new head (better than 1e-3 for both, measured)
DEFAULT_TRANSFER_LR = 3e-4  #: pre-trained with the head started from a base head (--head-from; measured)
DEFAULT_EPOCHS = 100
DEFAULT_PATIENCE = 20
WARMUP_FRACTION = 0.05
DEFAULT_HEAD_FROM = "auto"


def parse(argv=None):
    ap = argparse.ArgumentParser(prog="python -m training.finetune", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", help="registry name, released JMP checkpoint or jmp_calc model directory")
    ap.add_argument("--train", help="training structures (extxyz, ASE db, or any reader's format)")
    ap.add_argument("--valid", help="validation structures (default: a seeded 5%% of --train)")
    ap.add_argument("--test", help="test structures, evaluated at the end")
    ap.add_argument("--format", help="reader (training.data.FORMATS); default from the file suffix")
    ap.add_argument("--out", help="output directory")
    ap.add_argument("--targets", default="energy,forces", help="comma list: energy, forces, stress, PROPERTY ...")
    ap.add_argument("--forces", default="conservative", choices=["conservative", "direct"])
    ap.add_argument("--pooling", default=None, choices=["sum", "mean"], help="pooling of property heads")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--max-time", type=float, help="minutes")
    ap.add_argument("--max-steps", type=int, default=-1)
    ap.add_argument("--head-from", metavar="HEAD|auto|new",
                    help="start the energy head from this head of the base (auto: the one with the lowest zero-shot "
                         f"force error on the training data; new: random weights; default {DEFAULT_HEAD_FROM}, "
                         "new for released JMP checkpoints)")
    ap.add_argument("--from-scratch", action="store_true", help="same architecture, random weights (baseline)")
    ap.add_argument("--preset", default=None, choices=["tiny", "jmp_s", "jmp_l"],
                    help="architecture for --from-scratch without --base")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--lr", type=float, help=f"base learning rate (default {DEFAULT_TRANSFER_LR:g} when the "
                    f"head starts from a base head, else {DEFAULT_LR:g}: from scratch or with a new head)")
    ap.add_argument("--layer-decay", type=float, default=None, help="geometric layer-wise lr decay of the "
                    "pre-trained backbone (default: off; JMP's per-block table for released JMP checkpoints)")
    ap.add_argument("--warmup-epochs", type=float, default=None, help="linear warm-up (default: 5%% of --epochs)")
    ap.add_argument("--cosine-epochs", type=float, default=None, help="cosine decay to 0.1 lr over this many epochs "
                    "(default: --epochs)")
    ap.add_argument("--plateau-patience", type=int)
    ap.add_argument("--patience", type=int, help=f"early stopping patience in epochs (default {DEFAULT_PATIENCE}; "
                    "0 = off); the best-validation weights are exported either way")
    ap.add_argument("--ema", type=float, default=0.0, help="EMA decay of the weights (default 0 = off)")
    ap.add_argument("--grad-clip", type=float, default=10.0, help="gradient norm clipping (0 = off)")
    ap.add_argument("--energy-weight", type=float)
    ap.add_argument("--force-weight", type=float)
    ap.add_argument("--stress-weight", type=float, default=1.0)
    ap.add_argument("--fixed-atom-forces", action="store_true",
                    help="also train the forces of atoms held fixed (ASE FixAtoms, OC20's fixed flags); by default "
                         "they are left out, as in JMP")
    ap.add_argument("--max-abs-force", type=float, help="drop frames where an atom's |F| exceeds this (eV/A)")
    ap.add_argument("--cutoff", type=float)
    ap.add_argument("--max-neighbors", type=int)
    ap.add_argument("--max-train", type=int, help="use a seeded subset of the training set")
    ap.add_argument("--edge-dropout", type=float, default=0.0,
                    help="probability of dropping a2a edges while training (default 0: JMP fine-tunes without; the "
                    "base's value is not inherited)")
    ap.add_argument("--dropout", type=float, default=0.0, help="dropout in dense layers while training (default 0)")
    ap.add_argument("--task", help="one of JMP's 40 downstream tasks (--list-tasks)")
    ap.add_argument("--data-dir", help="with --task: where the task's files are")
    ap.add_argument("--fold", type=int, default=0, help="MatBench fold (0-4)")
    ap.add_argument("--list-tasks", action="store_true")
    ap.add_argument("--name", help="model name (default: the output directory's name)")
    ap.add_argument("--level-of-theory", default="unknown", help="for the model card, e.g. 'GFN2-xTB'")
    ap.add_argument("--dispersion", action="store_true", help="model card: labels include dispersion")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--devices", default=1)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override any run-config key")
    return ap.parse_args(argv)


def run_config(args) -> tuple[RunConfig, object]:
    """The run configuration these flags stand for (what ``training.pretrain`` would read from YAML; it is written
    to ``OUT/config.json``), and the loaded base model (None without ``--base``)."""
    from .tasks import get_task

    preset = None
    if args.task:
        try:
            preset = get_task(args.task)
        except KeyError as exc:
            raise ConfigError(str(exc.args[0])) from None
        if not args.data_dir:
            raise ConfigError("--task needs --data-dir (where the task's files are)")
    if not args.out:
        raise ConfigError("--out is required")
    check_output_dir(Path(args.out))  # before reading anything; fit() checks again with the model's size
    if not args.base and not (args.from_scratch and args.preset):
        raise ConfigError("give --base (the model to fine-tune), or --from-scratch --preset NAME")
    if not preset and not args.train:
        raise ConfigError("--train is required (or --task with --data-dir)")

    # the dataset: a preset's, or the flags'
    if preset:
        ds = preset.dataset_config(args.data_dir, fold=args.fold)
        if args.format:
            ds.format = args.format
    else:
        targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
        if {"forces", "stress"} & set(targets) and "energy" not in targets:
            raise ConfigError("forces and stress are derived from the energy head: add 'energy' to --targets")
        energy = "energy" in targets
        props = [t for t in targets if t not in ("energy", "forces", "stress")]
        ds = DatasetConfig(
            name="energy", train=args.train, val=args.valid, test=args.test, format=args.format,
            set_tags_to="auto", energy=energy, forces=args.forces if "forces" in targets else "none",
            stress="stress" in targets, atom_refs=True,
            properties={p: {"weight": 1.0, "reduction": "sum", "atom_refs": False} for p in props},
            heads={**({"energy": "energy"} if energy else {}), **{p: p for p in props}})
    if args.pooling:
        ds.properties = {p: {**spec, "reduction": args.pooling} for p, spec in ds.properties.items()}
    for flag, key in ((args.cutoff, "cutoff"), (args.max_neighbors, "max_neighbors")):
        if flag:
            ds.graph = {**ds.graph, key: flag}
    if args.energy_weight is not None:
        ds.energy_weight = args.energy_weight
    if args.force_weight is not None:
        ds.force_weight = args.force_weight
    ds.stress_weight, ds.max_train = args.stress_weight, args.max_train
    ds.fixed_atom_forces = bool(args.fixed_atom_forces)
    if args.max_abs_force is not None:
        ds.max_abs_force = args.max_abs_force

    base = load_base(args.base) if args.base else None
    pretrained = base is not None and not args.from_scratch
    # released JMP checkpoints (235 M / 44 M parameters) keep JMP's recipe: its per-block table and base rate. Our
    # mini models: the same rate for both modes and no layer decay (docs/finetune_recipe.md has the measurements)
    jmp_release = pretrained and (base.source or {}).get("format") == "jmp-lightning"
    layer_mult = None
    if jmp_release and args.layer_decay is None and base.config.num_blocks == 6:
        from .tasks import JMP_L_LAYERS

        layer_mult = JMP_L_LAYERS
    decay = args.layer_decay if pretrained else None
    if decay == 1 or layer_mult is not None:
        decay = None
    # the energy head starts from a base head (training.head_transfer) unless asked not to; JMP's releases keep
    # JMP's recipe (new heads)
    head_from = args.head_from or ("new" if jmp_release else DEFAULT_HEAD_FROM)
    transfer = pretrained and head_from != "new" and bool(ds.energy)
    default_lr = (preset.lr if preset else 5e-6) if jmp_release else DEFAULT_TRANSFER_LR if transfer else DEFAULT_LR
    epochs = args.epochs or (preset.epochs if preset else DEFAULT_EPOCHS)
    optim = OptimConfig(
        lr=args.lr or default_lr, weight_decay=0.1, betas=(0.9, 0.95), warmup_start_factor=0.1, min_lr_factor=0.1,
        # warm-up over the first 5 % of the run, then one cosine to 0.1 x lr at its end (unless set)
        warmup_epochs=args.warmup_epochs if args.warmup_epochs is not None else WARMUP_FRACTION * epochs,
        cosine=True, cosine_epochs=args.cosine_epochs if args.cosine_epochs is not None else epochs,
        plateau_patience=args.plateau_patience if args.plateau_patience is not None else
        (preset.plateau_patience if preset else 3), plateau_factor=0.8, layer_decay=decay,
        layer_multipliers=layer_mult, grad_clip=args.grad_clip or None, ema_decay=args.ema or None)
    patience = args.patience if args.patience is not None else \
        preset.early_stopping_patience if preset else DEFAULT_PATIENCE
    trainer = TrainerConfig(max_epochs=epochs, max_steps=args.max_steps, max_time_minutes=args.max_time,
                            batch_size=args.batch_size or (preset.batch_size if preset else 8),
                            num_workers=args.num_workers, devices=args.devices,
                            checkpoint_every_n_steps=args.checkpoint_every, early_stopping_patience=patience or None,
                            threads=args.threads, progress=not args.no_progress, log_every_n_steps=10)
    # dropout comes from this run's flags (or --set model.overrides.*), never from the base's pre-training config
    model = ModelConfig(preset=args.preset or "tiny", init_from=args.base, from_scratch=bool(args.from_scratch),
                        copy_heads=False, fit_scale_factors_batches=8,
                        head_from=head_from if transfer else None,
                        overrides={"edge_dropout": float(args.edge_dropout), "dropout": float(args.dropout)})
    card = CardConfig(task=preset.description if preset else f"fine-tuned on {args.train}",
                      level_of_theory=args.level_of_theory, dispersion=bool(args.dispersion), pretraining=False)
    cfg = RunConfig(name=args.name or Path(args.out).name, out=args.out, datasets=[ds], seed=args.seed, model=model,
                    sampling=SamplingConfig(temperature=1.0), optim=optim, trainer=trainer, card=card)
    cfg = RunConfig.from_dict(apply_overrides(cfg.to_dict(), args.set))
    if cfg.model.init_from != args.base:
        base = load_base(cfg.model.init_from) if cfg.model.init_from else None
    return cfg, base


def main(argv=None) -> int:
    args = parse(argv)
    if args.list_tasks:
        from .tasks import list_tasks

        print(list_tasks())
        return 0
    try:
        cfg, base = run_config(args)
        result, tests = execute(cfg, resume=args.resume, base=base)
        for report in tests.values():
            print(json.dumps(report, indent=1))
    except (ConfigError, DataError, TrainingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    best = {k: v for k, v in result.best.items() if k.startswith("val/")}
    print(f"done: {len(result.metrics)} epochs in {result.wall_s:.0f} s; best epoch {result.best.get('epoch')}: "
          + ", ".join(f"{k} {v:.4g}" for k, v in best.items())
          + f"\nmodel: {result.model_dir} ({describe_weights(result.exported)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
