"""Training throughput (structures/s) of the mini-JMP pre-training config: collate (graph building) and
forward + backward + AdamW step, timed separately, direct vs conservative forces, side by side in one run;
optionally against the original JMP implementation's step on the same structures.

    .venv/bin/python benchmarks/train_step.py [--config configs/mini_s.yaml] [--threads 1] [--steps 20]
    JMP_SRC=/work/jmpsrc/src .venv/bin/python benchmarks/train_step.py --threads 1 --reference /work/refvenv/bin/python

Uses the config's model and datasets (the committed mini-JMP data), its batch size and the temperature sampler
over all its datasets, so the batches mix catalysis slabs and molecules as in the real run. The first
``--warmup`` steps are not timed. Columns, in structures/s (batch size / median seconds per step):

* ``collate``: graph building + batching of one batch (what the DataLoader does, in workers or not);
* ``step``: ``module.compute`` (forward + loss) + backward + gradient clipping + the optimiser of
  ``JMPTrainModule.configure_optimizers`` (the real run's AdamW and parameter groups): what the reference runs;
* ``Lightning step``: the whole training-loop iteration as ``training.runner.fit`` runs it, on pre-built batches:
  a ``pl.Trainer`` with the module's optimiser, LR schedule and gradient clipping, ``training_step`` (finite
  check, per-dataset metric sums, step-loss logging) and the EMA callback; no validation, no checkpoints;
* ``both``: collate + Lightning step, what one process achieves without DataLoader workers.

Times are thread-CPU medians (``time.thread_time``; with ``--threads 1`` all the work runs on the timed thread), so
the other jobs of a shared machine do not enter; ``--clock wall`` uses wall time instead.

The training batches drop edges as the real run does: the collater gets the model config's ``edge_dropout``
(``configs/mini_s.yaml``: 0.1) and every draw carries the sampler's key. ``--workers 0 2`` also times the
``DataLoader`` (structures/s it delivers with that many worker processes, wall time, first batch excluded).

``--compile`` also times the direct step with ``trainer.compile`` (the forward through ``torch.compile``,
inductor, dynamic shapes; conservative steps cannot be compiled: double backward), leaving its compile steps out.

The step runs at the config's ``trainer.recompute_min_slots`` (what ``training.pretrain`` sets);
``--inference-recompute`` also times it at the inference default (2**19 padded slots), side by side.

``--reference PYTHON`` (with ``JMP_SRC`` set, PYTHON a venv with the original's dependencies, see
``../shared/reference``) writes the timed draws to a file and runs ``benchmarks/train_step_reference.py`` on them:
the original's graph building, forward, loss, backward, clipping and AdamW, same sizes and graph rules. Ours and
the reference alternate ``--rounds`` times; ours is timed as configured and, as the original has no smooth
dihedral basis, with JMP's (``dihedral_basis=legendre``) for the like-for-like ratio.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _clock(kind: str):
    return time.thread_time if kind == "cpu" else time.perf_counter


def build(config: str, max_train: int, overrides: list[str]):
    from training.config import load_config

    n_sets = len(load_config(config).datasets)
    cfg = load_config(config, [f"datasets.{i}.max_train={max_train}" for i in range(n_sets)] + list(overrides))
    try:
        from training.build import build_run
    except ImportError:  # a checkout before the single build path (commit 0224621), for before/after runs
        from training.pretrain import build as old_build

        model, tasks, task_data, trains, _, props = old_build(cfg)
    else:
        run = build_run(cfg, log=lambda *a, **k: None)
        model, tasks, trains, props = run.model, run.tasks, run.train_sets, run.property_names
    return cfg, model, tasks, trains, props


def make_optimizer(module):
    """The real run's optimiser (parameter groups, AdamW settings) without a Trainer."""
    conf = type(module).configure_optimizers
    try:
        from unittest import mock

        import lightning.pytorch as pl

        with mock.patch.object(pl.LightningModule, "trainer", mock.PropertyMock(
                return_value=mock.Mock(estimated_stepping_batches=1000))):
            out = conf(module)
    except Exception:  # noqa: BLE001 - an older module: plain AdamW with the run's settings
        o = module.optim
        return __import__("torch").optim.AdamW(module.model.parameters(), lr=o.lr, betas=tuple(o.betas),
                                               weight_decay=o.weight_decay)
    return out["optimizer"] if isinstance(out, dict) else out


def time_steps(module, batches, warmup, clock, grad_clip, each=False):
    """Median seconds of the steps after ``warmup`` (``each``: every step's seconds, warm-up included)."""
    import torch

    opt = make_optimizer(module)
    params = [p for g in opt.param_groups for p in g["params"]]
    times = []
    for k, b in enumerate(batches):
        t0 = clock()
        loss, _ = module.compute(b, train=True)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, grad_clip or 1e9)
        opt.step()
        if k >= warmup or each:
            times.append(clock() - t0)
    return times if each else statistics.median(times)


def time_lightning(module, batches, warmup, clock, ema_decay, log_every):
    """Median seconds between consecutive ``on_train_batch_start`` calls of a real ``trainer.fit``."""
    import lightning.pytorch as pl
    import torch

    from training.module import EMA

    class Timer(pl.Callback):
        def __init__(self):
            self.marks = []

        def on_train_batch_start(self, *a):
            self.marks.append(clock())

        def on_train_end(self, *a):
            self.marks.append(clock())

    timer = Timer()
    callbacks = ([EMA(ema_decay)] if ema_decay else []) + [timer]
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=len(batches), logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, limit_val_batches=0, inference_mode=False,
                         log_every_n_steps=log_every, callbacks=callbacks)
    dl = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False, collate_fn=lambda b: b)
    import logging
    import warnings

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, dl)
    steps = np.diff(timer.marks)[warmup:]
    return float(np.median(steps))


def dump(path, samples, tasks_spec, meta):
    """The draws (in batch order) and what the reference needs to build the same model and graphs."""
    nat = np.array([len(s.numbers) for s, _ in samples])
    tags = []
    for s, t in samples:
        tg = s.tags if s.tags is not None else np.zeros(len(s.numbers), np.int64)
        rule = tasks_spec[t]["set_tags_to"]
        tags.append(np.full(len(s.numbers), rule) if rule is not None else tg)
    nan = np.full((0, 3), np.nan)
    np.savez(path, natoms=nat, numbers=np.concatenate([s.numbers for s, _ in samples]),
             positions=np.concatenate([s.positions for s, _ in samples]),
             cell=np.stack([s.cell for s, _ in samples]), tags=np.concatenate(tags),
             fixed=np.concatenate([s.fixed if s.fixed is not None else np.zeros(len(s.numbers), bool)
                                   for s, _ in samples]),
             energy=np.array([s.energy for s, _ in samples], dtype=np.float64),
             forces=np.concatenate([s.forces if s.forces is not None else nan for s, _ in samples]),
             task=np.array([t for _, t in samples]), meta=json.dumps(meta))


def reference_meta(cfg, model, tasks, trains, bs):
    c = model.config
    keys = ("num_spherical num_radial num_blocks emb_size_atom emb_size_edge emb_size_trip_in emb_size_trip_out "
            "emb_size_quad_in emb_size_quad_out emb_size_aint_in emb_size_aint_out emb_size_rbf emb_size_cbf "
            "emb_size_sbf num_before_skip num_after_skip num_concat num_atom num_output_afteratom "
            "num_atom_emb_layers num_global_out_layers num_elements absolute_rbf_cutoff qint_tags "
            "activation").split()
    spec = []
    for t, ds in zip(tasks, trains):
        h = model.heads[t.head]
        periodic = bool(np.all(ds[0].pbc)) if t.graph.pbc is None else bool(t.graph.pbc)
        spec.append({"name": t.name, "energy_weight": t.energy_weight, "force_weight": t.force_weight,
                     "energy_std": h.energy_std, "force_std": h.force_std, "set_tags_to": t.set_tags_to,
                     "graph": {"cutoff": t.graph.cutoff, "pbc": periodic, **t.graph.caps}})
    o = cfg.optim
    return {"backbone": {k: getattr(c, k) for k in keys}, "edge_dropout": c.edge_dropout or 0.0,
            "batch_size": bs, "tasks": spec,
            "optim": {"lr": o.lr, "betas": list(o.betas), "weight_decay": o.weight_decay, "grad_clip": o.grad_clip}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "mini_s.yaml"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--max-train", type=int, default=400, help="structures read per dataset (speed of loading)")
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                    help="thread-CPU time (default; robust on a shared machine) or wall time")
    ap.add_argument("--no-lightning", action="store_true", help="skip the Lightning-loop column")
    ap.add_argument("--workers", type=int, nargs="*", default=[],
                    help="DataLoader worker counts to time the loader with (e.g. 0 2); none: skip")
    ap.add_argument("--reference", metavar="PYTHON", help="also time the original implementation (JMP_SRC set)")
    ap.add_argument("--dump", metavar="NPZ", help="where to write the draws for the reference (default: a temp file)")
    ap.add_argument("--rounds", type=int, default=1, help="alternations of ours and the reference")
    ap.add_argument("--compile", action="store_true",
                    help="also time the direct step with trainer.compile (torch.compile, inductor), side by side; "
                         "its compile steps (the first ones, and any recompilation) are left out of the median")
    ap.add_argument("--inference-recompute", action="store_true",
                    help="also time the step at the inference recomputation threshold (2**19 padded slots) instead of "
                         "the config's trainer.recompute_min_slots, side by side")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from jmp_calc.model import layers
    from training.batching import Collater, MultiTaskDataset, TemperatureSampler
    from training.module import JMPTrainModule

    clock = _clock(args.clock)
    variants = {"config": []}
    if args.reference:
        if not os.environ.get("JMP_SRC"):
            raise SystemExit("--reference needs JMP_SRC (the JMP checkout's src/ directory)")
        variants["legendre"] = ["model.overrides.dihedral_basis=legendre"]
    built = {name: build(args.config, args.max_train, ov) for name, ov in variants.items()}
    cfg, model0, tasks, trains, props = built["config"]
    if args.inference_recompute:  # the same model and data, only the run's threshold differs
        inference = dataclasses.replace(cfg.trainer, recompute_min_slots=layers.RECOMPUTE_MIN_SLOTS)
        built["inference-recompute"] = (dataclasses.replace(cfg, trainer=inference), model0, tasks, trains, props)
    bs = cfg.trainer.batch_size
    n = (args.warmup + args.steps) * bs
    sampler = TemperatureSampler([len(t) for t in trains], temperature=cfg.sampling.temperature,
                                 samples_per_epoch=n, seed=cfg.seed, keys=True)
    ds = MultiTaskDataset(trains)
    order = list(sampler)  # (index, key): the key seeds each draw's edge dropout
    p_drop = model0.config.edge_dropout
    collate = Collater(tasks, model0.config.qint_tags, props, edge_dropout=p_drop, seed=cfg.seed)
    t0 = clock()
    batches = [collate([ds[i] for i in order[k:k + bs]]) for k in range(0, n, bs)]
    coll = (clock() - t0) / len(batches)

    ref_file = None
    if args.reference:
        ref_file = Path(args.dump) if args.dump else Path(tempfile.mkdtemp()) / "draws.npz"
        dump(ref_file, [ds[i][:2] for i, _ in order], [{"set_tags_to": t.set_tags_to} for t in tasks],
             reference_meta(cfg, model0, tasks, trains, bs))

    results: dict = {}  # (variant, kind, column) -> list of seconds per step, one per round
    compile_info: list = []  # per round: (compile seconds per new graph, indices of the steps that compiled)
    ref: dict = {}
    for _ in range(args.rounds):
        for name, (vcfg, model, _, _, _) in built.items():
            layers.set_recompute_min_slots(vcfg.trainer.recompute_min_slots)  # as the training run sets it
            for kind in ("direct", "conservative"):
                kind_tasks = [dataclasses.replace(t, forces=kind) for t in tasks]
                module = JMPTrainModule(copy.deepcopy(model), kind_tasks, cfg.optim, property_names=props)
                module.train()
                results.setdefault((name, kind, "step"), []).append(
                    time_steps(module, batches, args.warmup, clock, cfg.optim.grad_clip))
                if args.compile and kind == "direct" and name == "config":
                    module = JMPTrainModule(copy.deepcopy(model), kind_tasks, cfg.optim, property_names=props,
                                            compile=True)
                    module.setup("fit")
                    module.train()
                    steps = time_steps(module, batches, args.warmup, clock, cfg.optim.grad_clip, each=True)
                    slow = 20 * statistics.median(steps)  # a compiling step takes minutes, the others < 1 s
                    compiled_at = [k for k, t in enumerate(steps) if t > slow]
                    results.setdefault((name, kind, "compiled"), []).append(statistics.median(
                        [t for k, t in enumerate(steps) if k >= args.warmup and k not in compiled_at]))
                    compile_info.append((module.compile_times, compiled_at))
                if not args.no_lightning and name == "config":
                    module = JMPTrainModule(copy.deepcopy(model), kind_tasks, cfg.optim, property_names=props)
                    results.setdefault((name, kind, "lightning"), []).append(
                        time_lightning(module, batches, args.warmup, clock, cfg.optim.ema_decay,
                                       cfg.trainer.log_every_n_steps))
        if args.reference:
            cmd = [args.reference, str(ROOT / "benchmarks" / "train_step_reference.py"), str(ref_file),
                   "--threads", str(args.threads), "--warmup", str(args.warmup)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS":
                                                                             str(args.threads)})
            line = [x for x in proc.stdout.splitlines() if x.startswith("REFERENCE ")]
            if proc.returncode or not line:
                raise SystemExit(f"reference run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            out = json.loads(line[0][len("REFERENCE "):])
            for kind in ("direct", "conservative"):
                key = "cpu_s" if args.clock == "cpu" else "wall_s"
                ref.setdefault((kind, "step"), []).append(out[kind][key])
                ref.setdefault((kind, "collate"), []).append(out[kind]["collate_s"])
            ref["params"] = out["direct"]["params"]

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"{cfg.name}: {sum(p.numel() for p in model0.parameters()):,} parameters, batch {bs}, "
          f"{args.threads} threads, {args.steps} timed steps x {args.rounds} rounds, datasets "
          f"{[d.name for d in cfg.datasets]}, edge dropout {p_drop}, {args.clock} time, "
          f"dihedral basis {model0.config.dihedral_basis}, recompute threshold "
          f"{cfg.trainer.recompute_min_slots:,} slots")
    print(f"{'forces':14s} {'collate':>9s} {'step':>9s} {'Lightning step':>15s} {'both':>9s}   (structures/s)")
    for kind in ("direct", "conservative"):
        s = med[("config", kind, "step")]
        lt = med.get(("config", kind, "lightning"))
        print(f"{kind:14s} {bs / coll:9.1f} {bs / s:9.1f} {(bs / lt) if lt else float('nan'):15.1f} "
              f"{bs / (coll + (lt or s)):9.1f}")
        if lt:
            print(f"{'':14s} Lightning loop overhead over the bare step: {100 * (lt - s) / s:+.1f} %")
    if ("config", "direct", "compiled") in med:
        d, dc = med[("config", "direct", "step")], med[("config", "direct", "compiled")]
        print(f"direct step with trainer.compile (inductor): {bs / dc:.1f} vs eager {bs / d:.1f} structures/s "
              f"({d / dc:.2f}x); per round, compile times " + "; ".join(
                  f"{', '.join(f'{x:.0f}' for x in ct)} s wall at steps {at}" for ct, at in compile_info))
    d, c = med[("config", "direct", "step")], med[("config", "conservative", "step")]
    print(f"direct / conservative step throughput: {c / d:.2f}x")
    if ("inference-recompute", "direct", "step") in med:
        th = built["inference-recompute"][0].trainer.recompute_min_slots
        print(f"recomputation threshold {cfg.trainer.recompute_min_slots:,} (config) vs {th:,} slots "
              f"(inference default), step structures/s: " + "; ".join(
                  f"{kind} {bs / med[('config', kind, 'step')]:.1f} vs "
                  f"{bs / med[('inference-recompute', kind, 'step')]:.1f} "
                  f"({med[('inference-recompute', kind, 'step')] / med[('config', kind, 'step')]:.2f}x)"
                  for kind in ("direct", "conservative")))
    if ref:
        print(f"\nvs the original implementation ({ref['params']:,} parameters; JMP's dihedral basis), "
              f"step = forward + loss + backward + clip + AdamW, medians over {args.rounds} round(s):")
        print(f"{'forces':14s} {'original':>9s} {'ours (legendre)':>16s} {'ratio':>7s} {'ours (config)':>14s} "
              f"{'ratio':>7s} {'orig collate':>13s} {'ours collate':>13s}")
        for kind in ("direct", "conservative"):
            r = statistics.median(ref[(kind, "step")])
            lg, cf = med[("legendre", kind, "step")], med[("config", kind, "step")]
            rc = statistics.median(ref[(kind, "collate")])
            print(f"{kind:14s} {bs / r:9.1f} {bs / lg:16.1f} {r / lg:6.2f}x {bs / cf:14.1f} {r / cf:6.2f}x "
                  f"{bs / rc:13.1f} {bs / coll:13.1f}")
        print("  per round, original / ours (legendre) step time: " + "; ".join(
            f"{kind} " + ", ".join(f"{a / b:.2f}" for a, b in zip(ref[(kind, 'step')],
                                                                results[('legendre', kind, 'step')]))
            for kind in ("direct", "conservative")))
    for w in args.workers:
        dl = torch.utils.data.DataLoader(ds, batch_size=bs, sampler=order, num_workers=w,
                                         collate_fn=Collater(tasks, model0.config.qint_tags, props,
                                                             edge_dropout=p_drop, seed=cfg.seed))
        it = iter(dl)
        next(it)  # worker start-up and the first batch are not timed
        t0, k = time.perf_counter(), 0
        for _ in it:
            k += 1
        print(f"DataLoader, {w} worker(s): {k * bs / (time.perf_counter() - t0):.1f} struct/s delivered "
              f"(wall; collate in {'the main process' if w == 0 else 'worker processes'})")
        del it, dl
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
