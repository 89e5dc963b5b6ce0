"""The LightningModule that trains a :class:`jmp_calc.model.JMPModel` on one or several datasets.

Losses follow JMP: per structure, the L1 error of the normalised energy and the mean over (free) atoms of the L2
norm of the normalised force error ("l2mae"), weighted per dataset and averaged over the structures of the batch
(structure-wise reduction). Scalar properties (QM9 targets, band gaps, ...) use the L1 error of the normalised
value; stress (conservative models) the L1 error in units of ``STRESS_SCALE``, averaged over the structures that
have a stress label (a batch of slabs and a few bulk cells would otherwise dilute it by the bulk share). A dataset
with ``loss: mse`` squares each of these normalised errors instead (the energy's, each atom's force-error norm,
each stress component's).
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch

from jmp_calc.compile import CompiledForward, CompileOptions
from jmp_calc.model import JMPModel
from jmp_calc.model.layers import set_recompute_min_slots
from jmp_calc.potential import differentiable_geometry
from jmp_calc.units import HeadUnits

from .batching import TrainBatch
from .config import OptimConfig
from .task import Task

__all__ = ["JMPTrainModule", "STRESS_SCALE", "TrainingError"]

STRESS_SCALE = 0.01  # eV/A^3 (1.6 GPa): the unit the stress loss is measured in


class TrainingError(RuntimeError):
    """A training run cannot go on (NaN loss, ...); the message names step, batch and dataset."""


def layerwise_groups(model: JMPModel, lr: float, decay: float | None, weight_decay: float,
                     multipliers: dict | None = None) -> list[dict]:
    """Parameter groups with JMP-style layer-wise learning rates: heads and the final MLPs get ``lr``; either
    geometric decay (interaction block ``i`` and its output block ``lr * decay**(B - i)``, embeddings and bases
    ``lr * decay**(B + 1)``) or JMP's explicit table ``{"embedding": m, "blocks": [m_0, ..., m_B-1]}`` (embedding
    and bases get ``m``; block ``i`` and output block ``i + 1`` get ``m_i``). Neither: one group."""
    B = model.config.num_blocks
    if multipliers is not None and len(multipliers.get("blocks", [])) != B:
        raise ValueError(f"layer_multipliers.blocks needs {B} values (one per interaction block)")
    groups: dict[float, list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        mult = 1.0
        parts = name.split(".")
        if multipliers is not None:
            if parts[0] == "embedding" or parts[:2] == ["backbone", "bases"] or \
                    (parts[:2] == ["backbone", "out_blocks"] and parts[2] == "0"):
                mult = float(multipliers["embedding"])
            elif parts[:2] == ["backbone", "int_blocks"]:
                mult = float(multipliers["blocks"][int(parts[2])])
            elif parts[:2] == ["backbone", "out_blocks"]:
                mult = float(multipliers["blocks"][int(parts[2]) - 1])
        elif decay is not None:

            if parts[0] == "embedding" or parts[:2] == ["backbone", "bases"]:
                mult = decay ** (B + 1)
            elif parts[:2] == ["backbone", "int_blocks"]:
                mult = decay ** (B - int(parts[2]))
            elif parts[:2] == ["backbone", "out_blocks"]:
                mult = decay ** (B + 1 - int(parts[2]))
        groups.setdefault(mult, []).append(p)
    return [{"params": ps, "lr": lr * m, "lr_mult": m, "weight_decay": weight_decay}
            for m, ps in sorted(groups.items(), reverse=True)]


class JMPTrainModule(pl.LightningModule):
    def __init__(self, model: JMPModel, tasks: list[Task], optim: OptimConfig, *,
                 property_names: list[str] = (), recompute_min_slots: int | None = None,
                 compile: bool | str = False):
        super().__init__()
        self.model = model
        #: TrainerConfig.compile: the forward of direct-force training steps through torch.compile (True:
        #: inductor; a string: that backend); made in setup, per process
        self.compile = compile
        self._compiled: CompiledForward | None = None
        #: the recomputation threshold of this run (TrainerConfig.recompute_min_slots), set in every process
        #: for the run's duration (setup/teardown); None: leave the process's setting alone
        self.recompute_min_slots = recompute_min_slots
        self._recompute_before: int | None = None
        self.tasks = list(tasks)
        self.optim = optim
        self.property_names = list(property_names)
        self.units = HeadUnits(model.heads, model.config.num_elements)  # model units -> eV, as the calculator
        self.register_buffer("task_head", torch.tensor([t.head if t.head is not None else 0 for t in tasks]), False)
        self.register_buffer("task_w", torch.tensor([[t.energy_weight, t.force_weight, t.stress_weight]
                                                     for t in tasks], dtype=torch.float64), False)
        self.register_buffer("task_direct", torch.tensor([t.forces == "direct" for t in tasks]), False)
        self.register_buffer("task_cons", torch.tensor([t.forces == "conservative" for t in tasks]), False)
        self.register_buffer("task_mse", torch.tensor([t.loss == "mse" for t in tasks]), False)
        self._sums: dict[str, dict[str, torch.Tensor]] = {"train": {}, "val": {}}
        self.plateau = {"best": math.inf, "bad_epochs": 0, "factor": 1.0}
        self.batches_this_epoch = 0
        self.total_steps: int | None = None
        self._loss_per_structure: torch.Tensor | None = None  # (B,) of the last compute()

    def setup(self, stage: str) -> None:
        if self.recompute_min_slots is not None and self._recompute_before is None:
            self._recompute_before = set_recompute_min_slots(self.recompute_min_slots)
        if self.compile and self._compiled is None:
            backend = self.compile if isinstance(self.compile, str) else "inductor"
            # Dynamo keeps its module guards here: Lightning switches these modules between train and eval
            self._compiled = CompiledForward(self.model, CompileOptions(backend=backend, skip_module_guards=False))

    @property
    def compile_times(self) -> list[float]:
        """Seconds of each training step that compiled a new graph (empty without ``compile``)."""
        return list(self._compiled.compile_times) if self._compiled is not None else []

    def teardown(self, stage: str) -> None:
        if self._recompute_before is not None:
            set_recompute_min_slots(self._recompute_before)
            self._recompute_before = None

    # ------------------------------------------------------------------ predictions and losses
    def _energies(self, out_e: torch.Tensor, g, heads: torch.Tensor) -> torch.Tensor:
        """eV per structure from model units of the given head per structure."""
        return self.units.energy(out_e.gather(1, heads[:, None])[:, 0], heads, g.batch, g.numbers)

    def compute(self, b: TrainBatch, train: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        g, task = b.g, b.task
        heads = self.task_head[task]
        has_e = ~torch.isnan(b.energy)
        has_f = ~torch.isnan(b.forces).any(1) & b.free
        has_s = ~torch.isnan(b.stress).flatten(1).any(1)
        atom_task = task[g.batch]
        cons_atoms = self.task_cons[atom_task]
        need_pos_grad = bool((has_f & cons_atoms).any())
        need_strain = bool((has_s & self.task_cons[task]).any())
        direct = bool((has_f & self.task_direct[atom_task]).any())
        with torch.enable_grad() if (train or need_pos_grad or need_strain) else torch.no_grad():
            pos_leaf, eps, pos, cell = differentiable_geometry(g, positions=need_pos_grad, strain=need_strain)
            if train and self._compiled is not None and not (need_pos_grad or need_strain):
                # direct forces only: a conservative step differentiates the forces again, which compiled
                # graphs do not support (double backward); validation stays eager too
                out = self._compiled.evaluate(
                    lambda fwd: fwd(g, heads=None, pos=pos, cell=cell, direct_forces=direct), g)
            else:
                out = self.model(g, pos=pos, cell=cell, direct_forces=direct)
            energy = self._energies(out["energy"], g, heads)  # (B,) eV
            forces = stress = None
            if need_pos_grad or need_strain:
                wrt = [t for t in (pos_leaf if need_pos_grad else None, eps) if t is not None]
                grads = torch.autograd.grad(energy[self.task_cons[task]].sum(), wrt, create_graph=train,
                                            allow_unused=True)
                if need_pos_grad:
                    forces = -grads[0]
                if need_strain:
                    vol = torch.abs(torch.linalg.det(g.cell.to(torch.float64))).clamp(min=1e-9)
                    stress = grads[-1].to(torch.float64) / vol[:, None, None]
            if direct:
                f_dir = out["forces"][torch.arange(g.pos.shape[0], device=g.pos.device), :, heads[g.batch]]
                f_dir = self.units.forces(f_dir, heads, g.batch)
                forces = f_dir if forces is None else torch.where(cons_atoms[:, None], forces, f_dir)

        B = g.num_structures
        zero = energy.new_zeros(B)
        w = self.task_w[task]  # (B, 3)
        std = self.units.energy_std[heads]
        mse = self.task_mse[task]  # (B,)

        def shape(err: torch.Tensor, sq: torch.Tensor) -> torch.Tensor:  # |normalised error| -> loss term
            return torch.where(sq, err * err, err)

        e_err = torch.where(has_e, energy - torch.nan_to_num(b.energy), zero)
        loss_s = w[:, 0] * shape(torch.abs(e_err) / std, mse)
        metrics = {"energy": (e_err.abs(), has_e), "energy_per_atom": (e_err.abs() / g.natoms, has_e)}
        if forces is not None:
            f_err = torch.where(has_f[:, None], forces.to(torch.float64) - torch.nan_to_num(b.forces), 0.0)
            norm = shape(torch.linalg.vector_norm(f_err, dim=1) / self.units.force_std[heads[g.batch]], mse[g.batch])
            n_f = zero.index_add(0, g.batch, has_f.to(zero.dtype))
            per_struct = zero.index_add(0, g.batch, norm) / n_f.clamp(min=1)
            loss_s = loss_s + w[:, 1] * per_struct
            metrics["forces"] = (f_err.abs().mean(1), has_f)  # component-wise MAE
        if stress is not None:
            s_ok = has_s & self.task_cons[task]
            s_err = torch.where(s_ok[:, None, None], stress - torch.nan_to_num(b.stress), 0.0)
            # the mean over the structures that have a stress label, not over the batch: in a batch of slabs and
            # a few bulk cells the structure-wise mean divided the stress term by the bulk share (~1/8 for EMT
            # surfaces), and no stress weight from 0.1 to 10 changed the stress error
            share = s_ok.sum().clamp(min=1).to(zero.dtype) / B
            loss_s = loss_s + w[:, 2] * shape(s_err.abs() / STRESS_SCALE, mse[:, None, None]).mean((1, 2)) / share
            metrics["stress"] = (s_err.abs().mean((1, 2)), s_ok)
        for p, val in b.properties.items():
            has_p = ~torch.isnan(val)
            if not has_p.any():
                continue
            h = [t.properties[p][0] if p in t.properties else 0 for t in self.tasks]
            wp = [t.properties[p][1] if p in t.properties else 0.0 for t in self.tasks]
            hp = torch.tensor(h, device=task.device)[task]
            pred = self._energies(out["energy"], g, hp)
            p_err = torch.where(has_p, pred - torch.nan_to_num(val), zero)
            w_p = torch.tensor(wp, device=task.device, dtype=zero.dtype)[task]
            loss_s = loss_s + w_p * shape(p_err.abs() / self.units.energy_std[hp], mse)
            metrics[p] = (p_err.abs(), has_p)
        loss = loss_s.mean()
        metrics["loss"] = (loss_s.detach(), torch.ones_like(has_e))
        self._loss_per_structure = loss_s.detach()  # for the error message of a non-finite loss
        return loss, self._per_task(metrics, task, g.batch)

    def _check_finite(self, loss: torch.Tensor, b: TrainBatch, batch_idx: int, stage: str) -> None:
        """Stop with one message naming the step, the batch and the structures (file:record) and datasets whose
        loss is not finite; a NaN would otherwise spread into every weight at the next optimizer step."""
        if bool(torch.isfinite(loss)):
            return
        per = self._loss_per_structure
        bad = torch.nonzero(~torch.isfinite(per)).flatten().tolist() or list(range(len(b)))
        names = sorted({self.tasks[int(b.task[i])].name for i in bad})
        shown = ", ".join(b.sources[i] or f"#{i}" for i in bad[:8]) + (" ..." if len(bad) > 8 else "")
        where = (f"training step {self.global_step}" if stage == "train" else "validation") + \
            f" (epoch {self.current_epoch}, batch {batch_idx})"
        raise TrainingError(f"non-finite loss ({float(loss.detach())}) at {where}: {len(bad)} of {len(b)} "
                            f"structures, dataset {', '.join(names)}: {shown}")

    def _per_task(self, metrics, task, batch_index) -> dict[str, torch.Tensor]:
        """Sum of absolute errors and counts per (task, metric), to be reduced over the epoch."""
        out = {}
        for k, (err, mask) in metrics.items():
            t = task if err.shape[0] == task.shape[0] else task[batch_index]
            for i, spec in enumerate(self.tasks):
                sel = mask & (t == i)
                out[f"{spec.name}/{k}"] = torch.stack([err[sel].sum().to(torch.float64),
                                                       sel.sum().to(torch.float64)])
        return out

    def _accumulate(self, stage: str, sums: dict[str, torch.Tensor]) -> None:
        acc = self._sums[stage]
        for k, v in sums.items():
            acc[k] = acc[k].to(v.device) + v.detach() if k in acc else v.detach().clone()

    def _reduced(self, acc: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``acc`` summed over the DDP ranks. The ranks' keys can differ (a rank whose batches had no structure of a
        dataset, or no forces, has no sums for it): every rank reduces the union of all ranks' keys, in one order,
        with zeros where it has none (a collective over different keys would hang or mix metrics up)."""
        if self.trainer.world_size <= 1 or not torch.distributed.is_initialized():
            return acc
        keys: list = [None] * self.trainer.world_size
        torch.distributed.all_gather_object(keys, sorted(acc))
        zero = torch.zeros(2, dtype=torch.float64, device=self.device)
        # reduce copies: the strategy's all-reduce works in place, and the running sums must stay this rank's
        return {k: self.trainer.strategy.reduce(acc[k].to(self.device, copy=True) if k in acc else zero.clone(),
                                                reduce_op="sum") for k in sorted(set().union(*keys))}

    def _log_epoch(self, stage: str) -> dict[str, float]:
        acc, self._sums[stage] = self._sums[stage], {}
        logged = {}
        for k, v in self._reduced(acc).items():
            if float(v[1]) > 0:
                logged[f"{stage}/{k}"] = float(v[0] / v[1])
        losses = [val for key, val in logged.items() if key.endswith("/loss")]
        if losses:
            logged[f"{stage}/loss"] = float(sum(losses) / len(losses))
        self.log_dict(logged, sync_dist=False, rank_zero_only=True)
        return logged

    # ------------------------------------------------------------------ Lightning hooks
    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch.to(device)

    def training_step(self, b: TrainBatch, batch_idx: int):
        loss, sums = self.compute(b, train=True)
        self._check_finite(loss, b, batch_idx, "train")
        self._accumulate("train", sums)
        self.batches_this_epoch += 1
        self.log("train/step_loss", loss.detach(), prog_bar=True, batch_size=len(b))
        return loss

    def on_train_epoch_start(self) -> None:  # Lightning skips it when it resumes mid-epoch (see on_load_checkpoint)
        self.batches_this_epoch = self._resume_batches
        self._resume_batches = 0

    def on_validation_epoch_start(self) -> None:
        if not self.trainer.sanity_checking and self._sums["train"]:
            self._log_epoch("train")  # the epoch's training batches are done: log them before validation

    def on_train_epoch_end(self) -> None:
        if self._sums["train"]:
            self._log_epoch("train")
        self.batches_this_epoch = self._resume_batches = 0  # checkpoints written after this start the next epoch

    def validation_step(self, b: TrainBatch, batch_idx: int):
        with torch.inference_mode(False):
            loss, sums = self.compute(b, train=False)
        self._check_finite(loss, b, batch_idx, "val")
        self._accumulate("val", sums)

    def on_validation_epoch_end(self) -> None:
        logged = self._log_epoch("val")
        if self.trainer.sanity_checking or "val/loss" not in logged:
            return
        self.log("val_loss", logged["val/loss"], prog_bar=True)
        o = self.optim
        if o.plateau_patience is not None:
            if logged["val/loss"] < self.plateau["best"] - 1e-12:
                self.plateau.update(best=logged["val/loss"], bad_epochs=0)
            else:
                self.plateau["bad_epochs"] += 1
                if self.plateau["bad_epochs"] > o.plateau_patience:
                    self.plateau.update(factor=self.plateau["factor"] * o.plateau_factor, bad_epochs=0)

    _resume_batches = 0

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        import random

        import numpy as np

        checkpoint["jmp_calc"] = {
            "plateau": dict(self.plateau), "batches_this_epoch": self.batches_this_epoch,
            # the interrupted epoch's training sums of every rank (a collective: all ranks save together); rank 0
            # takes them back on resume, the others start from zero, so the epoch's reduced metrics are whole
            "epoch": self.current_epoch,
            "train_sums": {k: v.cpu() for k, v in self._reduced(self._sums["train"]).items()},
            "rng": {"torch": torch.get_rng_state(), "numpy": _np_state(np.random.get_state()),
                    "python": random.getstate()},
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        import random

        import numpy as np

        state = checkpoint.get("jmp_calc", {})
        self.plateau.update(state.get("plateau", {}))
        self._resume_batches = int(state.get("batches_this_epoch", 0))
        self._sums["train"] = dict(state.get("train_sums", {})) if self.trainer.global_rank == 0 else {}
        sampler = getattr(self, "sampler", None)
        if sampler is not None and self._resume_batches * self.batch_size >= len(sampler):
            # saved after the epoch's last batch (at the epoch's end): the next epoch starts afresh
            self._resume_batches = 0
        if sampler is not None and self._resume_batches:
            sampler.skip(self._resume_batches * self.batch_size, epoch=int(state.get("epoch", 0)))
        # counted on from here: a checkpoint this run writes later in the epoch must count the batches before the
        # resume too (on_train_epoch_start, which would set it, is not called when Lightning resumes mid-epoch)
        self.batches_this_epoch = self._resume_batches
        rng = state.get("rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            np.random.set_state(_np_unstate(rng["numpy"]))
            random.setstate(_tuples(rng["python"]))

    def configure_optimizers(self):
        o = self.optim
        groups = layerwise_groups(self.model, o.lr, o.layer_decay, o.weight_decay, o.layer_multipliers)
        # foreach: one multi-tensor kernel per AdamW op instead of a Python loop over the ~200 tensors (bitwise the
        # same weights as the loop; fused=True would be faster still but rounds differently)
        opt = torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay, foreach=True)
        total = self.trainer.estimated_stepping_batches
        total = int(total) if (o.cosine and math.isfinite(total) and total > 0) else None
        if o.cosine and o.cosine_steps:
            total = int(o.cosine_steps)
        self.total_steps = total

        def factor(step: int) -> float:
            warm = o.warmup_start_factor + (1 - o.warmup_start_factor) * min(1.0, step / max(1, o.warmup_steps))
            cos = 1.0
            if total is not None and step > o.warmup_steps:
                frac = min(1.0, (step - o.warmup_steps) / max(1, total - o.warmup_steps))
                cos = o.min_lr_factor + (1 - o.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * frac))
            return warm * cos * self.plateau["factor"]

        sched = torch.optim.lr_scheduler.LambdaLR(opt, [factor] * len(groups))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        if self.optim.grad_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.optim.grad_clip, gradient_clip_algorithm="norm")


def _np_state(state):
    name, keys, pos, has_gauss, cached = state
    return [name, torch.from_numpy(keys.astype("int64")), int(pos), int(has_gauss), float(cached)]


def _np_unstate(state):
    import numpy as np

    name, keys, pos, has_gauss, cached = state
    return (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


class EMA(pl.Callback):
    """Exponential moving average of the weights; validation and export use it. Its state is checkpointed."""

    def __init__(self, decay: float):
        self.decay = float(decay)
        self.shadow: dict[str, torch.Tensor] | None = None
        self._backup: dict[str, torch.Tensor] | None = None
        self._pairs: tuple[list, list, list, list] | None = None  # (shadow, live) floating and other tensors

    def on_fit_start(self, trainer, pl_module) -> None:
        state = pl_module.model.state_dict()
        if self.shadow is None:
            self.shadow = {k: v.detach().clone() for k, v in state.items()}
        else:
            self.shadow = {k: v.to(state[k].device) for k, v in self.shadow.items()}
        self._pairs = None

    def _tensor_pairs(self, model: torch.nn.Module) -> tuple[list, list, list, list]:
        """Shadow and live tensors, paired once per fit (``state_dict()`` per step costs more than the update): the
        optimiser and ``load_state_dict`` (``swap_in`` / ``swap_out``) update the live tensors in place, so the
        same storage holds the weights all run long (the live ones are kept as detached aliases of it)."""
        if self._pairs is None:
            fs, fl, os_, ol = [], [], [], []
            for k, v in model.state_dict().items():  # detached aliases of the parameters and buffers
                if v.dtype.is_floating_point:
                    fs.append(self.shadow[k])
                    fl.append(v)
                else:
                    os_.append(self.shadow[k])
                    ol.append(v)
            self._pairs = (fs, fl, os_, ol)
        return self._pairs

    @torch.no_grad()
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # one multi-tensor lerp over all floating tensors (bitwise the per-tensor lerp_ it replaces)
        fs, fl, os_, ol = self._tensor_pairs(pl_module.model)
        if fs:
            torch._foreach_lerp_(fs, fl, 1.0 - self.decay)
        for s, v in zip(os_, ol):
            s.copy_(v)

    def swap_in(self, pl_module) -> None:
        if self.shadow is None or self._backup is not None:
            return
        self._backup = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}
        pl_module.model.load_state_dict(self.shadow)

    def swap_in_model(self, model: torch.nn.Module) -> None:
        """Load the averaged weights into ``model`` for good (the end of a run)."""
        if self.shadow is not None:
            model.load_state_dict(self.shadow)

    def swap_out(self, pl_module) -> None:
        if self._backup is not None:
            pl_module.model.load_state_dict(self._backup)
            self._backup = None

    def on_validation_start(self, trainer, pl_module) -> None:
        self.swap_in(pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        self.swap_out(pl_module)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.shadow = state.get("shadow")
        self._pairs = None
