"""Training throughput (structures/s) of the mini-JMP pre-training config: collate (graph building) and
forward + backward + AdamW step, timed separately, direct vs conservative forces, side by side in one run.

    .venv/bin/python benchmarks/train_step.py [--config configs/mini_s.yaml] [--threads 2] [--steps 20]

Uses the config's model and datasets (the committed mini-JMP data), its batch size and the temperature sampler
over all its datasets, so the batches mix catalysis slabs and molecules as in the real run. The first
``--warmup`` steps are not timed. Prints structures/s for data loading + collation alone, for the optimisation
step alone and for both (what a single-process run achieves); the conservative column re-runs the same batches
with forces = -dE/dx (double backward).

The training batches drop edges as the real run does: the collater gets the model config's ``edge_dropout``
(``configs/mini_s.yaml``: 0.1) and every draw carries the sampler's key, so the a2a graph loses that fraction of
its edges before main/a2ee2a/qint are selected. ``--workers 0 2`` also times the ``DataLoader`` that feeds the
run (``trainer.num_workers`` worker processes building graphs while the main process trains) over the same
draws: structures/s delivered by the loader alone, after its first batch (worker start-up excluded).
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
    ap.add_argument("--workers", type=int, nargs="*", default=[],
                    help="DataLoader worker counts to time the loader with (e.g. 0 2); none: skip")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from training.batching import Collater, MultiTaskDataset, TemperatureSampler
    from training.config import load_config
    from training.module import JMPTrainModule

    n_sets = len(load_config(args.config).datasets)
    cfg = load_config(args.config, [f"datasets.{i}.max_train={args.max_train}" for i in range(n_sets)])
    try:
        from training.build import build_run
    except ImportError:  # a checkout before the single build path (commit 0224621), for before/after runs
        from training.pretrain import build

        model, tasks, task_data, trains, _, props = build(cfg)
    else:
        run = build_run(cfg, log=lambda *a, **k: None)
        model, tasks, trains, props = run.model, run.tasks, run.train_sets, run.property_names
        task_data = tasks  # the collater reads the tasks' graph rules and labels
    bs = cfg.trainer.batch_size
    n = (args.warmup + args.steps) * bs
    sampler = TemperatureSampler([len(t) for t in trains], temperature=cfg.sampling.temperature,
                                 samples_per_epoch=n, seed=cfg.seed, keys=True)
    ds = MultiTaskDataset(trains)
    order = list(sampler)  # (index, key): the key seeds each draw's edge dropout
    p_drop = model.config.edge_dropout
    results = {}
    for kind in ("direct", "conservative"):
        kind_tasks = [dataclasses.replace(t, forces=kind) for t in tasks]
        collate = Collater(task_data, model.config.qint_tags, props, edge_dropout=p_drop, seed=cfg.seed)
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
    loader = {}
    for w in args.workers:
        dl = torch.utils.data.DataLoader(ds, batch_size=bs, sampler=order, num_workers=w,
                                         collate_fn=Collater(task_data, model.config.qint_tags, props,
                                                             edge_dropout=p_drop, seed=cfg.seed))
        it = iter(dl)
        next(it)  # worker start-up and the first batch are not timed
        t0, k = time.perf_counter(), 0
        for _ in it:
            k += 1
        loader[w] = k * bs / (time.perf_counter() - t0)
        del it, dl
    print(f"{cfg.name}: {sum(p.numel() for p in model.parameters()):,} parameters, batch {bs}, "
          f"{args.threads} threads, {args.steps} timed steps, datasets {[d.name for d in cfg.datasets]}, "
          f"edge dropout {p_drop}")
    print(f"{'forces':14s} {'collate (struct/s)':>20s} {'train step (struct/s)':>22s} {'both (struct/s)':>16s}")
    for kind, (c, s, both) in results.items():
        print(f"{kind:14s} {c:20.1f} {s:22.1f} {both:16.1f}")
    d, c = results["direct"][2], results["conservative"][2]
    print(f"direct / conservative throughput: {d / c:.2f}x")
    for w, rate in loader.items():
        print(f"DataLoader, {w} worker(s): {rate:.1f} struct/s delivered (collate in "
              f"{'the main process' if w == 0 else 'worker processes'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
