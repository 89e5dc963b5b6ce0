"""Multi-task pre-training (JMP): one energy + force head per dataset on a shared GemNet-OC backbone.

    python -m training.pretrain configs/mini_s.yaml [KEY=VALUE ...] [--resume] [--devices N] [--num-nodes N]

Temperature sampling across datasets, per-dataset graph settings and loss weights, AdamW with warm-up + cosine,
gradient clipping, EMA, edge dropout (``model.overrides.edge_dropout``), mixed precision on GPU, validation per
dataset, a checkpoint every ``trainer.checkpoint_every_n_steps`` (``--resume`` continues the run exactly where the
last checkpoint left it: same data order, same loss curve). Writes ``OUT/model`` (a jmp_calc model directory with
every head, loadable by ``JMPCalculator(OUT/"model", head=NAME)`` and by ``training.finetune --base OUT/model``),
``OUT/metrics.csv`` and ``OUT/learning_curve.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from jmp_calc import config as jconfig
from jmp_calc.model import JMPModel

from .base_model import PRESETS, init_from, load_base
from .batching import TaskData
from .config import ConfigError, RunConfig, load_config
from .data.base import DataError
from .module import TaskSpec, TrainingError
from .runner import check_output_dir, dataset_stats, describe_weights, fit, head_for, load_split


def build(cfg: RunConfig):
    """Datasets, heads, model and loss specs of a pre-training run."""
    import lightning.pytorch as pl

    pl.seed_everything(cfg.seed, verbose=False)  # the model's initial weights are part of the run
    base = None
    if cfg.model.init_from:
        base = load_base(cfg.model.init_from)
    elif cfg.model.preset not in PRESETS:
        raise ConfigError(f"model.preset must be one of {sorted(PRESETS)}, got {cfg.model.preset!r}")
    direct = any(d.forces == "direct" for d in cfg.datasets)
    if direct and any(d.forces == "conservative" for d in cfg.datasets):
        raise ConfigError("pre-training mixes direct and conservative forces; use one kind for every dataset")
    try:
        if base is not None:
            backbone = dataclasses.replace(base.config, **{**cfg.model.overrides, "direct_forces": direct})
        else:
            backbone = PRESETS[cfg.model.preset](**{**cfg.model.overrides, "direct_forces": direct})
    except (TypeError, jconfig.ConfigError) as exc:
        raise ConfigError(f"model.overrides: {exc}") from None
    names = [d.name for d in cfg.datasets]
    if len(set(names)) != len(names):
        raise ConfigError(f"dataset names must be unique (they name the heads), got {names}")
    heads, tasks, task_data, trains, vals = [], [], [], [], []
    props: list[str] = []
    for d in cfg.datasets:
        train, val = load_split(d, cfg.seed)
        stats = dataset_stats(d, train, seed=cfg.seed)
        first = len(heads)
        new = head_for(d, stats, direct)
        heads += new
        energy = "energy" in stats
        prop_heads = {p: (first + int(energy) + i, float(d.properties[p].get("weight", 1.0)))
                      for i, p in enumerate(stats["properties"])}
        props += [p for p in prop_heads if p not in props]
        tasks.append(TaskSpec(name=d.name, head=first if energy else None,
                              forces=d.forces if energy else "none", energy_weight=d.energy_weight if d.energy else 0,
                              force_weight=d.force_weight, stress_weight=d.stress_weight if d.stress else 0.0,
                              properties=prop_heads))
        task_data.append(TaskData(graph=new[0].graph, set_tags_to=d.set_tags_to, energy=d.energy,
                                  forces=d.forces != "none", stress=d.stress, properties=tuple(prop_heads),
                                  name=d.name))
        trains.append(train)
        vals.append(val)
        print(f"dataset {d.name}: {len(train)} train / {len(val)} val structures; "
              + (f"energy std {stats['energy']['std']:.4g} eV, " if energy else "")
              + (f"force rms {stats.get('force_rms', float('nan')):.4g} eV/A" if "force_rms" in stats else ""),
              flush=True)
    model = JMPModel(backbone, heads)
    if base is not None:
        print(init_from(base, model, cfg.model.init_from, cfg.model.init_heads), flush=True)
    return model, tasks, task_data, trains, vals, props


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.pretrain", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="YAML run configuration (see configs/)")
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE overrides, e.g. trainer.max_epochs=3 datasets.0.train=x")
    ap.add_argument("--resume", action="store_true", help="continue the run in OUT from its last checkpoint")
    ap.add_argument("--out", help="output directory (overrides the config's out)")
    ap.add_argument("--devices", help="GPUs (or processes) per node for DDP")
    ap.add_argument("--num-nodes", type=int, help="nodes for multi-node DDP (launch with torchrun or SLURM)")
    args = ap.parse_args(argv)
    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"out={args.out}")
    if args.devices:
        overrides.append(f"trainer.devices={args.devices}")
    if args.num_nodes:
        overrides.append(f"trainer.num_nodes={args.num_nodes}")
    try:
        cfg = load_config(args.config, overrides)
        check_output_dir(Path(cfg.out))  # before reading any data; fit() checks again with the model's size
        model, tasks, task_data, trains, vals, props = build(cfg)
        card = {"name": cfg.name, "task": "multi-task pre-training (one energy/force head per dataset)",
                "training_data": [d.name for d in cfg.datasets], "default_head": None,
                "pretraining": True, "license": "MIT", "elements": sorted({int(z) for h in model.heads
                                                                          for z in (h.atom_refs or {})}),
                "forces": {h.name: ("direct" if h.direct_forces else "conservative") for h in model.heads},
                "units": {"energy": "eV", "forces": "eV/A"},
                "trained_from": f"{cfg.model.init_from} (training.pretrain, model.init_from)" if cfg.model.init_from
                else "scratch (training.pretrain)"}
        readme = (f"# {cfg.name}\n\nA GemNet-OC backbone pre-trained with `training.pretrain` on "
                  f"{', '.join(d.name for d in cfg.datasets)} (one head each). Use a head zero-shot with "
                  "`JMPCalculator(path, head=NAME)` or fine-tune it with `python -m training.finetune --base`.\n")
        result = fit(cfg, model, tasks, trains, vals, task_data, resume=args.resume,
                     fit_scales=not cfg.model.init_from, card=card, readme=readme, property_names=props)
    except (ConfigError, DataError, TrainingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"done: {len(result.metrics)} epochs in {result.wall_s:.0f} s; model in {result.model_dir} "
          f"({describe_weights(result.exported)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
