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
structures' ``info`` (pooled with ``--pooling sum|mean``). Defaults (docs/finetune_recipe.md): lr 3e-3 for both
modes, warm-up over 5 % of the run then cosine to 0.1 lr, ReduceLROnPlateau, gradient clipping, early stopping
(patience 20 epochs), no EMA, no dropout, no layer decay (``--layer-decay`` for geometric; released JMP checkpoints
keep JMP's per-block table); the exported model is the best-validation checkpoint.
``--from-scratch`` uses random weights for the same architecture, everything else equal: the baseline.

Writes ``DIR/model/`` (model.safetensors + config.json + README.md card; ``JMPCalculator(DIR/"model")``),
``DIR/metrics.csv`` (train/valid MAE of every target per epoch) and ``DIR/learning_curve.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from jmp_calc.config import ConfigError as ModelConfigError
from jmp_calc.config import GraphConfig
from jmp_calc.model import JMPModel

from .base_model import PRESETS, default_graph, load_base, transfer_backbone
from .batching import TaskData
from .config import ConfigError, DatasetConfig, ModelConfig, RunConfig, SamplingConfig, TrainerConfig, apply_overrides
from .data.base import DataError
from .module import OptimConfig, TaskSpec, TrainingError
from .runner import check_output_dir, dataset_stats, describe_weights, fit, head_for, read_labelled

#: fine-tuning defaults for our (mini) models, chosen by measurement: docs/finetune_recipe.md
DEFAULT_LR = 3e-3  #: both modes, pre-trained and from scratch (better than 1e-3 for both, measured)
DEFAULT_EPOCHS = 100
DEFAULT_PATIENCE = 20
WARMUP_FRACTION = 0.05

def _split(samples, sizes: tuple[int | None, int | None], seed: int):
    """Seeded train / val / rest split by counts."""
    n = len(samples)
    n_train, n_val = sizes
    perm = np.random.default_rng(seed).permutation(n)
    n_val = n_val if n_val is not None else max(1, n // 20)
    n_train = n_train if n_train is not None else n - n_val
    if n_train + n_val > n:
        raise ConfigError(f"asked for {n_train} train + {n_val} val structures but the data has {n}")
    parts = perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]
    return [samples.subset(np.sort(p)) for p in parts]


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
    ap.add_argument("--from-scratch", action="store_true", help="same architecture, random weights (baseline)")
    ap.add_argument("--preset", default=None, choices=["tiny", "jmp_s", "jmp_l"],
                    help="architecture for --from-scratch without --base")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--lr", type=float, help=f"base learning rate (default {DEFAULT_LR:g} for both modes)")
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


def build(args):
    import lightning.pytorch as pl

    from .tasks import get_task

    pl.seed_everything(args.seed, verbose=False)  # new heads' initial weights are part of the run

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
    check_output_dir(Path(args.out))  # before reading any data; fit() checks again with the model's size
    if not args.base and not (args.from_scratch and args.preset):
        raise ConfigError("give --base (the model to fine-tune), or --from-scratch --preset NAME")
    targets = tuple(preset.targets) if preset else tuple(t.strip() for t in args.targets.split(",") if t.strip())
    unknown_forces = {"forces", "stress"} & set(targets) and "energy" not in targets
    if unknown_forces:
        raise ConfigError("forces and stress are derived from the energy head: add 'energy' to --targets")
    energy = "energy" in targets
    props = [t for t in targets if t not in ("energy", "forces", "stress")]
    need = tuple(t for t in ("energy", "forces") if t in targets)  # every frame of an ASE file must have them

    # data
    fmt = args.format or (preset.format if preset else None)
    reader = dict(preset.reader) if preset else {}
    test = None
    if preset:
        train_path = str(Path(args.data_dir) / preset.files["train"])
        reader = {k: v for k, v in reader.items() if v != "{split}"}
        all_samples = read_labelled(train_path, fmt, need, **reader)
        if preset.family == "matbench":
            from sklearn.model_selection import KFold

            folds = list(KFold(5, shuffle=True, random_state=18012019).split(np.arange(len(all_samples))))
            rest, test_idx = folds[args.fold]
            rest = np.random.default_rng(args.seed).permutation(rest)
            n_val = max(1, len(rest) // 10)
            train, val = all_samples.subset(np.sort(rest[n_val:])), all_samples.subset(np.sort(rest[:n_val]))
            test = all_samples.subset(test_idx)
        else:
            train, val, test = _split(all_samples, (preset.train_size, preset.val_size), args.seed)
    else:
        if not args.train:
            raise ConfigError("--train is required (or --task with --data-dir)")
        train = read_labelled(args.train, fmt, need)
        if args.valid:
            val = read_labelled(args.valid, fmt, need)
        else:
            train, val, _ = _split(train, (None, max(1, len(train) // 20)), args.seed)
        if args.test:
            test = read_labelled(args.test, fmt, ())
    if args.max_train:
        n = min(args.max_train, len(train))
        train = train.subset(np.sort(np.random.default_rng(args.seed).choice(len(train), n, replace=False)))
    if len(train) == 0 or len(val) == 0:
        raise ConfigError(f"empty training ({len(train)}) or validation ({len(val)}) set")
    first = train[0]
    for need in (["energy"] if energy else []) + (["forces"] if "forces" in targets else []):
        if getattr(first, need) is None:
            raise DataError(f"{first.source or 'training set'}: no {need} (targets: {','.join(targets)})")
    periodic = bool(first.pbc.all())

    base = None if (args.from_scratch and not args.base) else load_base(args.base)
    graph = dict(preset.graph) if preset else default_graph(base, periodic)
    if args.cutoff:
        graph["cutoff"] = args.cutoff
    if args.max_neighbors:
        graph["max_neighbors"] = args.max_neighbors
    GraphConfig.from_dict(graph)
    pooling = args.pooling or (preset.reduction if preset else "sum")
    forces_kind = args.forces if preset is None else preset.forces if preset.forces != "none" else "conservative"
    ds = DatasetConfig(
        name=preset.name if preset else "energy", train=None, graph=graph,
        set_tags_to=None if periodic else 2, forces=forces_kind if "forces" in targets else "none",
        energy=energy, stress="stress" in targets,
        energy_weight=args.energy_weight if args.energy_weight is not None else
        (preset.energy_weight if preset else 1.0),
        force_weight=args.force_weight if args.force_weight is not None else (preset.force_weight if preset else 10.0),
        stress_weight=args.stress_weight, reduction="sum",
        atom_refs=preset.atom_refs if preset else True,
        properties={p: {"weight": 1.0, "reduction": pooling,
                        "atom_refs": bool(preset.atom_refs) if preset else False} for p in props})
    if not energy:
        ds.energy = False
    stats = dataset_stats(ds, train, seed=args.seed)
    if not energy:
        stats.pop("energy", None)
    direct = forces_kind == "direct" and "forces" in targets
    heads = head_for(ds, stats, direct)
    if energy:
        heads[0].name = "energy"
    for h, p in zip(heads[int(energy):], props):
        h.name = p
    prop_heads = {p: (int(energy) + i, 1.0) for i, p in enumerate(props)}

    # dropout comes from this run's flags (or --set model.overrides.*), never from the base's pre-training config
    overrides = {"edge_dropout": float(args.edge_dropout), "dropout": float(args.dropout)}
    overrides = apply_overrides({"model": {"overrides": overrides}},
                                [s for s in args.set if s.startswith("model.overrides.")])["model"]["overrides"]
    try:
        if base is not None:
            backbone = dataclasses.replace(base.config, direct_forces=direct, **overrides)
        else:
            backbone = PRESETS[args.preset](direct_forces=direct, **overrides)
    except (TypeError, ModelConfigError) as exc:
        raise ConfigError(f"model.overrides: {exc}") from None
    model = JMPModel(backbone, heads)
    notes = []
    if base is not None and not args.from_scratch:
        n_copied, fresh = transfer_backbone(base, model)
        notes.append(f"backbone from {args.base}: {n_copied} tensors copied"
                     + (f", {len(fresh)} force-branch tensors new" if fresh else ""))
    else:
        notes.append("random initial weights (from scratch)" + (f", architecture of {args.base}" if base else ""))

    task = TaskSpec(name=ds.name, head=0 if energy else None, forces=ds.forces if energy else "none",
                    energy_weight=ds.energy_weight if energy else 0.0, force_weight=ds.force_weight,
                    stress_weight=ds.stress_weight if ds.stress else 0.0, properties=prop_heads)
    tdata = TaskData(graph=heads[0].graph, set_tags_to=ds.set_tags_to, energy=energy,
                     forces="forces" in targets, stress=ds.stress, properties=tuple(props), name=ds.name)
    bs = args.batch_size or (preset.batch_size if preset else 8)
    steps_per_epoch = max(1, -(-len(train) // bs))
    n_blocks = backbone.num_blocks
    pretrained = base is not None and not args.from_scratch
    # released JMP checkpoints (235 M / 44 M parameters) keep JMP's recipe: its per-block table and base rate. Our
    # mini models: the same rate for both modes and no layer decay (docs/finetune_recipe.md has the measurements)
    jmp_release = pretrained and base.source.get("format") == "jmp-lightning"
    layer_mult = None
    if jmp_release and args.layer_decay is None and n_blocks == 6:
        from .tasks import JMP_L_LAYERS

        layer_mult = JMP_L_LAYERS
    decay = args.layer_decay if pretrained else None
    if decay == 1 or layer_mult is not None:
        decay = None
    default_lr = (preset.lr if preset else 5e-6) if jmp_release else DEFAULT_LR
    epochs = args.epochs or (preset.epochs if preset else DEFAULT_EPOCHS)
    # warm-up over the first 5 % of the run, then one cosine to 0.1 x lr at its end (unless set)
    warmup = args.warmup_epochs if args.warmup_epochs is not None else WARMUP_FRACTION * epochs
    cosine = args.cosine_epochs if args.cosine_epochs is not None else epochs
    optim = OptimConfig(lr=args.lr or default_lr, weight_decay=0.1, betas=(0.9, 0.95),
                        warmup_steps=max(1, int(warmup * steps_per_epoch)), warmup_start_factor=0.1,
                        min_lr_factor=0.1, cosine=True, cosine_steps=int(cosine * steps_per_epoch),
                        plateau_patience=args.plateau_patience if args.plateau_patience is not None else
                        (preset.plateau_patience if preset else 3), plateau_factor=0.8, layer_decay=decay,
                        layer_multipliers=layer_mult, grad_clip=args.grad_clip or None,
                        ema_decay=args.ema or None)
    trainer = TrainerConfig(max_epochs=epochs, max_steps=args.max_steps, max_time_minutes=args.max_time,
                            batch_size=bs, num_workers=args.num_workers, devices=args.devices,
                            checkpoint_every_n_steps=args.checkpoint_every,
                            early_stopping_patience=(args.patience if args.patience is not None else
                                                     preset.early_stopping_patience if preset else DEFAULT_PATIENCE)
                            or None,
                            threads=args.threads, progress=not args.no_progress, log_every_n_steps=10)
    name = args.name or Path(args.out).name
    cfg_dict = RunConfig(name=name, out=args.out, datasets=[ds], seed=args.seed,
                         model=ModelConfig(overrides=dict(overrides), fit_scale_factors_batches=8),
                         sampling=SamplingConfig(temperature=1.0),
                         optim=optim, trainer=trainer).to_dict()
    cfg = RunConfig.from_dict(apply_overrides(cfg_dict, args.set))
    elements = sorted({int(z) for i in range(min(len(train), 5000)) for z in train[i].numbers})
    base_license = (getattr(base, "source", None) or {}).get("license") if base is not None else None
    license_ = base_license if (pretrained and base_license) else "MIT"
    card = {
        "name": name, "task": preset.description if preset else f"fine-tuned on {args.train}",
        "targets": list(targets), "level_of_theory": args.level_of_theory, "dispersion": bool(args.dispersion),
        "units": {"energy": "eV", "forces": "eV/A", "stress": "eV/A^3"}, "elements": elements,
        "graph": graph, "forces": {heads[0].name: forces_kind} if "forces" in targets else {},
        "default_head": heads[0].name,
        "license": license_, "base_model": None if args.from_scratch else args.base,
        "trained_from": "scratch" if args.from_scratch else f"fine-tuned from {args.base}",
        "n_train": len(train), "n_valid": len(val), "seed": args.seed, "notes": notes,
    }
    readme = (f"# {name}\n\nGemNet-OC ({sum(p.numel() for p in model.parameters()):,} parameters) "
              f"{card['trained_from']} with `training.finetune` on {len(train)} structures "
              f"({args.level_of_theory}); targets: {', '.join(targets)}.\n\n"
              f"Use: `JMPCalculator(\"{Path(args.out) / 'model'}\")`.\n")
    return cfg, model, task, tdata, train, val, test, props, card, readme, not pretrained


def main(argv=None) -> int:
    args = parse(argv)
    if args.list_tasks:
        from .tasks import list_tasks

        print(list_tasks())
        return 0
    try:
        cfg, model, task, tdata, train, val, test, props, card, readme, scratch = build(args)
        for line in card["notes"]:
            print(line, flush=True)
        result = fit(cfg, model, [task], [train], [val], [tdata], resume=args.resume, fit_scales=scratch,
                     card=card, readme=readme, property_names=props)
        if test is not None and len(test):
            from .evaluate import evaluate_model

            report = evaluate_model(result.model_dir, test, out=Path(cfg.out) / "test")
            report["weights"] = result.exported  # the best-validation checkpoint the test metrics are of
            (Path(cfg.out) / "test_metrics.json").write_text(json.dumps(report, indent=1) + "\n")
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
