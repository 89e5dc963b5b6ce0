"""Training throughput (structures/s) of the mini-JMP pre-training config: collate (graph building) and
forward + backward + AdamW step, timed separately, direct vs conservative forces, side by side in one run.

    .venv/bin/python benchmarks/train_step.py [--config configs/mini_s.yaml] [--threads 2] [--steps 20]

Uses the config's model and datasets (the committed mini-JMP data), its batch size and the temperature sampler
over all its datasets, so the batches mix catalysis slabs and molecules as in the real run. The first
``--warmup`` steps are not timed. Prints structures/s for data loading + collation alone, for the optimisation
step alone and for both (what a single-process run achieves); the conservative column re-runs the same batches
with forces = -dE/dx (double backward).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "mini_s.yaml"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--max-train", type=int, default=400, help="structures read per dataset (speed of loading)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from training.batching import Collater, MultiTaskDataset, TemperatureSampler
    from training.config import load_config
    from training.module import JMPTrainModule
    from training.pretrain import build

    n_sets = len(load_config(args.config).datasets)
    cfg = load_config(args.config, [f"datasets.{i}.max_train={args.max_train}" for i in range(n_sets)])
    model, tasks, task_data, trains, _, props = build(cfg)
    bs = cfg.trainer.batch_size
    n = (args.warmup + args.steps) * bs
    sampler = TemperatureSampler([len(t) for t in trains], temperature=cfg.sampling.temperature,
                                 samples_per_epoch=n, seed=cfg.seed)
    ds = MultiTaskDataset(trains)
    order = list(sampler)
    results = {}
    for kind in ("direct", "conservative"):
        kind_tasks = [dataclasses.replace(t, forces=kind) for t in tasks]
        collate = Collater(task_data, model.config.qint_tags, props)
        t0 = time.perf_counter()
        batches = [collate([ds[i] for i in order[k:k + bs]]) for k in range(0, n, bs)]
        t_collate = time.perf_counter() - t0
        module = JMPTrainModule(model, kind_tasks, cfg.optim, property_names=props)
        module.train()
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr)
        times = []
        for k, b in enumerate(batches):
            t0 = time.perf_counter()
            loss, _ = module.compute(b, train=True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip or 1e9)
            opt.step()
            if k >= args.warmup:
                times.append(time.perf_counter() - t0)
        step = sum(times) / len(times)
        coll = t_collate / len(batches)
        results[kind] = (bs / coll, bs / step, bs / (coll + step))
    print(f"{cfg.name}: {sum(p.numel() for p in model.parameters()):,} parameters, batch {bs}, "
          f"{args.threads} threads, {args.steps} timed steps, datasets {[d.name for d in cfg.datasets]}")
    print(f"{'forces':14s} {'collate (struct/s)':>20s} {'train step (struct/s)':>22s} {'both (struct/s)':>16s}")
    for kind, (c, s, both) in results.items():
        print(f"{kind:14s} {c:20.1f} {s:22.1f} {both:16.1f}")
    d, c = results["direct"][2], results["conservative"][2]
    print(f"direct / conservative throughput: {d / c:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
