"""Multi-task pre-training (JMP): one energy + force head per dataset on a shared GemNet-OC backbone.

    python -m training.pretrain configs/mini_s.yaml [KEY=VALUE ...] [--resume] [--devices N] [--num-nodes N]

Temperature sampling across datasets, per-dataset graph settings and loss weights, AdamW with warm-up + cosine,
gradient clipping, EMA, edge dropout (``model.overrides.edge_dropout``), mixed precision on GPU, validation per
dataset, a checkpoint every ``trainer.checkpoint_every_n_steps`` (``--resume`` continues the run exactly where the
last checkpoint left it: same data order, same loss curve). Writes ``OUT/model`` (a jmp_calc model directory with
every head, loadable by ``JMPCalculator(OUT/"model", head=NAME)`` and by ``training.finetune --base OUT/model``),
``OUT/metrics.csv`` and ``OUT/learning_curve.png``; datasets with a test set (a ``test`` file, or what ``train_size``
/ ``val_size`` / ``kfold`` leave over) are evaluated: ``OUT/test_metrics.json``. The build is shared with
``training.finetune`` (:mod:`training.build`): a fine-tuning run's ``OUT/config.json`` is a valid config here.
"""

from __future__ import annotations

import argparse
import sys

from .config import ConfigError, load_config
from .data.base import DataError
from .module import TrainingError
from .run import execute
from .runner import describe_weights


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.pretrain", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="YAML run configuration (see configs/)")
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE overrides, e.g. trainer.max_epochs=3 datasets.0.train=x")
    ap.add_argument("--resume", action="store_true", help="continue the run in OUT from its last checkpoint")
    ap.add_argument("--out", help="output directory (overrides the config's out)")
    ap.add_argument("--devices", help="GPUs (or processes) per node for DDP")
    ap.add_argument("--num-nodes", type=int, help="nodes for multi-node DDP (launch with torchrun or SLURM)")
    args = ap.parse_intermixed_args(argv)  # overrides before or after the flags
    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"out={args.out}")
    if args.devices:
        overrides.append(f"trainer.devices={args.devices}")
    if args.num_nodes:
        overrides.append(f"trainer.num_nodes={args.num_nodes}")
    try:
        result, _ = execute(load_config(args.config, overrides), resume=args.resume)
    except (ConfigError, DataError, TrainingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"done: {len(result.metrics)} epochs in {result.wall_s:.0f} s; model in {result.model_dir} "
          f"({describe_weights(result.exported)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
