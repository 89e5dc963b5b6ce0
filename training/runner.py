"""Shared machinery of ``training.pretrain`` and ``training.finetune``: datasets -> heads and statistics, scale
factor fitting, the Lightning trainer (checkpoints, resume, loggers, DDP) and the export of the trained model."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import time
from pathlib import Path

import torch

from jmp_calc.io import save_model
from jmp_calc.model import JMPModel
from jmp_calc.model.layers import ScaleFactor

from .batching import Collater, MultiTaskDataset, TemperatureSampler
from .build import TrainingRun
from .config import ConfigError

__all__ = ["fit_scale_factors", "fit", "check_output_dir", "checkpoint_bytes", "RunResult", "write_learning_curve",
           "ResumeCheckpoint", "load_best_weights", "checkpoint_weights", "describe_weights"]

MIN_FREE_BYTES = 200 * 2**20
HEAD_FIT_BATCHES = 8  #: first training batches that model.head_from scores heads and fits references on


def checkpoint_bytes(model: torch.nn.Module) -> int:
    """Disk a run needs: ``last.ckpt`` and the best checkpoint each hold the weights, their EMA and AdamW's two
    moments (4 float32 copies), one more checkpoint exists while an atomic save writes, plus the exported model."""
    n = sum(p.numel() for p in model.parameters())
    return 4 * n * (3 * 4 + 1)


def check_output_dir(out: Path, need_bytes: int = MIN_FREE_BYTES) -> None:
    """Fail before any training when the output directory cannot hold the run: it cannot be created or written
    (a path under a file, a read-only disk or directory), or its disk has less than ``need_bytes`` free (at least
    ``MIN_FREE_BYTES``). Raises :class:`ConfigError` with one line; leaves nothing behind when it fails."""
    out = Path(out)
    base = out
    while not base.exists() and base.parent != base:
        base = base.parent
    if not base.is_dir():
        raise ConfigError(f"output directory {out} cannot be created: {base} is a file")
    need = max(int(need_bytes), MIN_FREE_BYTES)
    free = shutil.disk_usage(base).free
    if free < need:
        raise ConfigError(f"output directory {out}: only {free / 2**20:.0f} MiB free on its disk; this run's "
                          f"checkpoints need at least {need / 2**20:.0f} MiB")
    created = [p for p in (out, *out.parents) if not p.exists()]  # deepest first
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_bytes(b"x" * 4096)
        probe.unlink()
    except OSError as exc:
        for p in created:
            try:
                p.rmdir()
            except OSError:
                pass
        raise ConfigError(f"output directory {out} is not writable: {exc.strerror or exc}") from None


@torch.no_grad()
def fit_scale_factors(model: JMPModel, batches: list, *, log=print) -> dict[str, float]:
    """Fit every ScaleFactor of a new model, in forward order, so each scaled sum keeps the variance of its input
    (GemNet's "fit scaling factors" step; released checkpoints carry theirs)."""
    factors = [(n, m) for n, m in model.named_modules() if isinstance(m, ScaleFactor)]
    fitted = {}
    was_training = model.training
    model.eval()
    for name, sf in factors:
        sf.scale_factor.zero_()
        sf.start_fit_()
        for b in batches:
            model(b.g, direct_forces=model.config.direct_forces)
        fitted[name] = sf.finish_fit_()
    model.train(was_training)
    if fitted:
        log(f"fitted {len(fitted)} scale factors on {len(batches)} batches: "
            f"{min(fitted.values()):.3f} .. {max(fitted.values()):.3f}")
    return fitted


@dataclasses.dataclass
class RunResult:
    out: Path
    model_dir: Path
    metrics: list[dict]
    best: dict  #: the metrics.csv row of the best validation
    wall_s: float
    exported: dict = dataclasses.field(default_factory=dict)  #: which weights model_dir holds (load_best_weights)
    is_global_zero: bool = True  #: this process wrote the export (DDP: rank 0)


def write_learning_curve(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k[len("val/"):] for r in rows for k in r if k.startswith("val/") and not k.endswith("loss")})
    if not rows or not keys:
        return
    ncols = min(len(keys), 3)  # one row per dataset of a pre-training run (energy, per atom, forces)
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    for ax, k in zip(axes.flat, keys):
        for stage, style in (("train", "--"), ("val", "-")):
            xs = [r["epoch"] for r in rows if f"{stage}/{k}" in r]
            ys = [r[f"{stage}/{k}"] for r in rows if f"{stage}/{k}" in r]
            if xs:
                ax.plot(xs, ys, style, marker="o", ms=3, label=stage)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{k} MAE")
        ax.set_title(k, fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def fit(run: TrainingRun, *, resume: bool, card: dict, readme: str) -> RunResult:
    """Train ``run.model`` with Lightning and export the weights of the best validation (EMA weights when there is
    an EMA: those are the ones validated) to ``cfg.out/model`` with ``card``; the model holds them afterwards. Scale
    factors are fitted first when the weights are new (not copied from a base)."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar

    from .module import EMA, JMPTrainModule

    cfg, model, tasks, property_names = run.cfg, run.model, run.tasks, run.property_names
    out = Path(cfg.out)
    check_output_dir(out, checkpoint_bytes(model))
    t = cfg.trainer
    if t.threads:
        torch.set_num_threads(int(t.threads))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if resume and not last.is_file():
        raise ConfigError(f"--resume: no checkpoint at {last}")
    if not resume and last.is_file():
        raise ConfigError(f"{out} already holds a run ({last}); pass --resume to continue it or choose another --out")
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1, default=str) + "\n")

    # edge dropout: the model's config is the one source of p; only training batches drop edges (keyed draws)
    collate = Collater(tasks, model.config.qint_tags, property_names)
    train_collate = Collater(tasks, model.config.qint_tags, property_names,
                             edge_dropout=model.config.edge_dropout, seed=cfg.seed)
    train_ds, val_ds = MultiTaskDataset(run.train_sets), MultiTaskDataset(run.val_sets)
    world = int(t.num_nodes) * (int(t.devices) if str(t.devices).isdigit() else 1)
    rank = int(os.environ.get("RANK", 0))
    sampler = TemperatureSampler(train_ds.sizes, temperature=cfg.sampling.temperature,
                                 samples_per_epoch=cfg.sampling.samples_per_epoch, seed=cfg.seed,
                                 num_replicas=world, rank=rank, keys=True,
                                 multipliers=[d.sample_weight for d in cfg.datasets])
    # own generators: creating a DataLoader iterator draws a seed from torch's global RNG otherwise, and a resumed
    # run creates its iterators at other points of the RNG stream than the run it continues (dropout would differ)
    # pinned batches on a GPU: the DataLoader's pin-memory thread page-locks each batch, and TrainBatch.to copies it
    # asynchronously, so neither graph building (in workers) nor the host-to-device copy holds up the step
    on_gpu = t.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    loader_kw = dict(num_workers=t.num_workers, persistent_workers=t.num_workers > 0, pin_memory=on_gpu,
                     generator=torch.Generator().manual_seed(cfg.seed))
    train_dl = torch.utils.data.DataLoader(train_ds, batch_size=t.batch_size, sampler=sampler, drop_last=False,
                                           collate_fn=train_collate, **loader_kw)
    val_dl = torch.utils.data.DataLoader(val_ds, batch_size=t.val_batch_size or t.batch_size, shuffle=False,
                                         collate_fn=collate,
                                         **{**loader_kw, "generator": torch.Generator().manual_seed(cfg.seed + 1)})
    def first_batches(n: int) -> list:
        """The first ``n`` global batches of epoch 0 (no dropout), the same on every DDP rank and for any number
        of ranks."""
        first = sampler.epoch_indices(0)[:t.batch_size * world * n].tolist()
        return list(torch.utils.data.DataLoader(train_ds, batch_size=t.batch_size * world, sampler=first,
                                                collate_fn=collate))

    if not run.pretrained and not resume and cfg.model.fit_scale_factors_batches > 0:
        fit_scale_factors(model, first_batches(cfg.model.fit_scale_factors_batches))
    if run.pretrained and cfg.model.head_from:
        # also on --resume: the references it fits live in the heads' configs, not in the checkpoint (the same
        # batches and base give the same references; the copied weights are then replaced by the checkpoint's)
        from .head_transfer import transfer_heads

        energy_heads = {tk.head: k for k, tk in enumerate(tasks) if tk.head is not None}
        notes = transfer_heads(run.base, model, energy_heads, cfg.model.head_from,
                               first_batches(HEAD_FIT_BATCHES))
        card["notes"] = [*(card.get("notes") or []), *notes]

    optim = cfg.optim.resolved(steps_per_epoch=len(train_dl))  # warmup_epochs / cosine_epochs -> steps
    module = JMPTrainModule(model, tasks, optim, property_names=property_names,
                            recompute_min_slots=t.recompute_min_slots, compile=t.compile)
    module.sampler, module.batch_size = sampler, t.batch_size
    callbacks = [ModelCheckpoint(dirpath=ckpt_dir, filename="step{step}", save_top_k=1, monitor="val_loss",
                                 mode="min", auto_insert_metric_name=False),  # the best epoch's state
                 ResumeCheckpoint(last, t.checkpoint_every_n_steps),
                 EpochCSV(out / "metrics.csv", resume=resume)]
    ema = EMA(cfg.optim.ema_decay) if cfg.optim.ema_decay else None
    if ema:
        callbacks.append(ema)
    if t.early_stopping_patience:
        callbacks.append(EarlyStopping("val_loss", patience=t.early_stopping_patience, mode="min", strict=False))
    if t.max_time_minutes:
        callbacks.append(ChunkTimer(duration={"minutes": t.max_time_minutes}, interval="step"))
    if t.progress:
        callbacks.append(TQDMProgressBar(refresh_rate=max(1, t.log_every_n_steps // 2)))
    logger = _logger(t.logger, out, cfg.name)
    accel = t.accelerator
    precision = t.precision
    if precision == "auto":
        precision = "bf16-mixed" if (accel in ("auto", "gpu", "cuda") and torch.cuda.is_available()) else "32-true"
    trainer = pl.Trainer(
        accelerator=accel, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy, precision=precision,
        max_epochs=t.max_epochs, max_steps=t.max_steps,
        callbacks=callbacks, logger=logger, log_every_n_steps=t.log_every_n_steps,
        check_val_every_n_epoch=t.val_every_n_epochs, inference_mode=False, use_distributed_sampler=False,
        enable_progress_bar=t.progress, enable_model_summary=False, num_sanity_val_steps=0,
        default_root_dir=str(out), deterministic=False,
    )
    # DDP: the launcher (Lightning's own for --devices, SLURM, torchrun) assigns the ranks; the processes Lightning
    # starts itself have no RANK variable, so the sampler's shard comes from the trainer
    sampler.num_replicas, sampler.rank = trainer.world_size, trainer.global_rank
    start = time.time()
    # our own checkpoints hold tensors, numbers and strings only: resume without unpickling code
    try:
        trainer.fit(module, train_dl, val_dl, ckpt_path=str(last) if resume else None, weights_only=True)
    finally:
        module.teardown("fit")  # a failed fit skips Lightning's teardown: restore the recomputation threshold
    if trainer.interrupted:
        raise KeyboardInterrupt
    if module.compile_times:
        print(f"torch.compile: {len(module.compile_times)} graph(s) compiled in "
              f"{sum(module.compile_times):.0f} s ({', '.join(f'{x:.0f}' for x in module.compile_times)} s)")
    exported = load_best_weights(module.model, best_checkpoint(ckpt_dir, callbacks[0]), ema)
    rows = _read_rows(out / "metrics.csv")
    best = next((r for r in rows if r.get("epoch") == exported.get("epoch")), None) if "epoch" in exported else None
    best = best or (min(rows, key=lambda r: r.get("val/loss", math.inf)) if rows else {})
    model_dir = out / "model"
    card = dict(card, epochs=len(rows), best_epoch=exported.get("epoch"),
                notes=[*(card.get("notes") or []), describe_weights(exported)],
                valid_metrics={k: v for k, v in best.items() if k.startswith("val/")},
                wall_time_s=round(time.time() - start, 1))
    if trainer.is_global_zero:
        model.eval()
        save_model(model.cpu(), model_dir, card=card, readme=readme.format(**card) if "{" in readme else readme,
                   overwrite=True)
        write_learning_curve(rows, out / "learning_curve.png", cfg.name)
    return RunResult(out, model_dir, rows, best, time.time() - start, exported, trainer.is_global_zero)


def describe_weights(exported: dict) -> str:
    """One line for the model card and the run's output: which weights were exported."""
    if exported.get("weights") == "best validation":
        return f"weights of the best validation: epoch {exported['epoch']}, step {exported['step']}"
    return "weights at the end of the run (no validation ran)"


def best_checkpoint(ckpt_dir: Path, callback) -> Path | None:
    """The checkpoint of the lowest validation loss: ``callback`` (the run's ``ModelCheckpoint``) keeps one per run,
    but a validation that ran when a time limit stopped a chunk mid-epoch leaves a checkpoint the resumed run's
    callback does not know of (the resume state was written before that validation); every ``step*.ckpt`` in
    ``ckpt_dir`` is compared by the score it was saved with."""
    best, best_score = None, math.inf
    for path in sorted(Path(ckpt_dir).glob("step*.ckpt")):
        state = torch.load(path, map_location="cpu", weights_only=True)
        mc = state.get("callbacks", {}).get(callback.state_key, {})
        score = mc.get("current_score", mc.get("best_model_score"))
        score = float(score) if score is not None else math.inf
        if score < best_score or best is None and str(path) == str(callback.best_model_path):
            best, best_score = path, score
    return best


def checkpoint_weights(state: dict, ema_key: str | None) -> dict:
    """The model weights a loaded checkpoint holds: the EMA's (``ema_key``: the EMA callback's state key) or,
    with None, the module's own."""
    if ema_key is not None:
        return state["callbacks"][ema_key]["shadow"]
    return {k[len("model."):]: v for k, v in state["state_dict"].items() if k.startswith("model.")}


def load_best_weights(model: JMPModel, best_path: str | Path | None, ema=None) -> dict:
    """Put the weights of the best validation into ``model`` (in place): those of ``best_path``, the checkpoint
    ``ModelCheckpoint(monitor="val_loss")`` kept, where validation used the EMA weights when there is an EMA.
    Without one (no validation has run yet) the weights at the end of the run (EMA when there is one). Returns
    ``{"weights": "best validation" | "last", "epoch": E, "step": S}`` (epoch/step absent for "last")."""
    if best_path and Path(best_path).is_file():
        state = torch.load(best_path, map_location="cpu", weights_only=True)
        weights = checkpoint_weights(state, ema.state_key if ema is not None else None)
        dev = next(model.parameters()).device
        model.load_state_dict({k: v.to(dev) for k, v in weights.items()})
        return {"weights": "best validation", "epoch": int(state["epoch"]), "step": int(state["global_step"]),
                "checkpoint": Path(best_path).name}
    if ema is not None:
        ema.swap_in_model(model)
    return {"weights": "last"}


def _logger(kind: str, out: Path, name: str):
    from lightning.pytorch import loggers

    if kind == "csv":
        return loggers.CSVLogger(str(out), name="logs", version="")
    if kind == "tensorboard":
        return loggers.TensorBoardLogger(str(out), name="logs", version="")
    if kind == "wandb":
        return loggers.WandbLogger(name=name, save_dir=str(out))
    if kind in ("none", "", None):
        return False
    raise ConfigError(f"trainer.logger must be csv, tensorboard, wandb or none, got {kind!r}")


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path) as fh:
        return [{k: (float(v) if k not in ("epoch", "step") else int(float(v))) for k, v in r.items() if v != ""}
                for r in csv.DictReader(fh)]


import lightning.pytorch as _pl  # noqa: E402  (the callback below needs the base class)


class ResumeCheckpoint(_pl.callbacks.Checkpoint):
    """``checkpoints/last.ckpt``, the state ``--resume`` continues from: written every ``every_n_steps`` optimizer
    steps, at the batch where a run stops early (``max_time``, ``max_steps``) and at the end of every epoch (after
    its validation, early stopping and plateau updates).

    Not Lightning's ``ModelCheckpoint(save_last=True)``: monitoring ``val_loss``, it defers step checkpoints until
    a validation has run (none at all in a long first epoch), and a checkpoint written at an epoch's last batch,
    before the validation, resumes into the next epoch with that validation skipped. A ``Checkpoint`` subclass, so
    Lightning runs it after the other callbacks (the EMA has been updated, the timer has decided, when it saves).
    """

    def __init__(self, path: Path, every_n_steps: int):
        self.path, self.every = Path(path), int(every_n_steps or 0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # validation follows: written at the epoch's end instead
        stopping = trainer.should_stop or 0 < (trainer.max_steps or 0) <= trainer.global_step
        if stopping or (self.every > 0 and trainer.global_step % self.every == 0):
            trainer.save_checkpoint(self.path, weights_only=False)  # full state: resumable

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # an epoch cut short (max_time, max_steps) was saved at its last batch: Lightning would resume a checkpoint
        # written here as a finished epoch and skip the rest of it
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            trainer.save_checkpoint(self.path, weights_only=False)  # full state: resumable


class ChunkTimer(_pl.callbacks.Timer):
    """``trainer.max_time_minutes`` per process: Lightning's own timer (``Trainer(max_time=)``) restores the time
    already spent from the checkpoint, so a run resumed in chunks would stop at once after the first chunk. Here
    every ``--resume`` gets the full budget again (the step count, data order and schedule still continue)."""

    def load_state_dict(self, state_dict) -> None:
        self._offset = 0


class EpochCSV(_pl.Callback):
    """``metrics.csv``: one row per validated epoch with every train/val metric (kept across resumes)."""

    def __init__(self, path: Path, resume: bool):
        self.path = Path(path)
        self.rows = _read_rows(self.path) if resume else []
        self.start = time.time()
        self.offset = self.rows[-1]["wall_s"] if self.rows else 0.0

    def on_validation_end(self, trainer, pl_module) -> None:  # after the module logged this epoch's metrics
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        m = {k: float(v) for k, v in trainer.callback_metrics.items()
             if k.startswith(("train/", "val/")) and k != "train/step_loss"}
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step,
               "wall_s": round(self.offset + time.time() - self.start, 2),
               "lr": trainer.optimizers[0].param_groups[0]["lr"], **m}
        self.rows = [r for r in self.rows if r["epoch"] < row["epoch"]] + [row]
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(self.rows)
        os.replace(tmp, self.path)
