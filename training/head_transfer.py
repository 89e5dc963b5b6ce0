"""Starting a fine-tuning energy head from a pre-training head (``model.head_from``, ``--head-from``).

A new head normally starts from random weights: its first predictions are noise, whatever the backbone knows. A
pre-training head already maps the backbone's features to energies; copied into the new head, with its last layer
rescaled from the base head's energy unit to the new one and the per-element references (fitted on the whole
training set) corrected for its zero-shot energies on the first training batches, the fine-tuned model starts
where the pre-trained model already is: forces of a molecule labelled like the pre-training data are near their
final error before the first step (MACE and fairchem fine-tune foundation models the same way, head included).
``auto`` picks the base head with the lowest zero-shot force error (energy error without forces) on the first
training batches.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from jmp_calc.model import JMPModel
from jmp_calc.potential import differentiable_geometry

from .config import ConfigError
from .data.stats import fit_refs

__all__ = ["HeadScore", "score_heads", "transfer_head", "transfer_heads"]


@dataclass
class HeadScore:
    """How one base head does on the new data before any training (its energies with refitted references)."""

    name: str
    force_mae: float | None  #: eV/A, component-wise, conservative forces (None: no force labels)
    energy_mae: float | None  #: eV per atom after refitting the per-element references (None: no energies)
    atom_refs: dict[int, float]  #: eV per element, fitted to (label - the head's energy)

    def errors(self) -> str:
        parts = [f"force MAE {self.force_mae * 1e3:.1f} meV/A" if self.force_mae is not None else "",
                 f"energy MAE {self.energy_mae * 1e3:.1f} meV/atom" if self.energy_mae is not None else ""]
        return ", ".join(p for p in parts if p)

    def describe(self) -> str:
        return f"{self.name} ({self.errors()})"


def score_heads(base: JMPModel, batches: list, reduction: str = "sum", direct: bool = False,
                task: int | None = None, prior_refs: dict[int, float] | None = None) -> list[HeadScore]:
    """Zero-shot errors of every base head with ``reduction`` on ``batches`` (training.batching.TrainBatch) of
    the new data (only the structures of dataset ``task`` when given). Energies are the heads' outputs in eV
    without their own references; each head gets the per-element references that fit the labels best, as a copied
    head will. Forces: -dE/dx, or the heads' direct forces with ``direct`` (a direct-force fine-tune of a base that
    has them). ``prior_refs``: the references fitted on the whole training set (the new head's); only corrections
    to them are fitted on the batches, so elements the batches lack keep theirs."""
    heads = [j for j, h in enumerate(base.heads) if h.reduction == reduction]
    if not heads:
        raise ConfigError(f"the base model has no head with reduction {reduction!r} to start from")
    direct = direct and len(base.output.out_forces) > 0
    std = torch.tensor([base.heads[j].energy_std for j in heads], dtype=torch.float64)
    f_std = torch.tensor([base.heads[j].force_std for j in heads], dtype=torch.float64)
    numbers, e_pred, e_true, f_err = [], [], [], [[] for _ in heads]
    was_training = base.training
    base.eval()
    try:
        for b in batches:
            g = b.g
            mine = torch.ones_like(b.task, dtype=torch.bool) if task is None else b.task == task
            if not bool(mine.any()):
                continue
            has_f = ~torch.isnan(b.forces).any(1) & b.free & mine[g.batch]
            need_f = bool(has_f.any())
            grad_f = need_f and not direct
            with torch.enable_grad() if grad_f else torch.no_grad():
                pos_leaf, _, pos, cell = differentiable_geometry(g, positions=grad_f, strain=False)
                out = base(g, heads=heads, pos=pos, cell=cell, direct_forces=direct)
                e = out["energy"].to(torch.float64) * std  # (B, H) eV
                for k in range(len(heads)) if need_f else ():
                    if direct:
                        f = out["forces"][:, :, k].to(torch.float64) * f_std[k]
                    else:
                        (grad,) = torch.autograd.grad(e[:, k].sum(), pos_leaf, retain_graph=k < len(heads) - 1)
                        f = -grad.to(torch.float64)
                    f_err[k].append((f - b.forces.to(torch.float64))[has_f].abs().reshape(-1))
            ok = ~torch.isnan(b.energy) & mine
            counts = np.split(g.numbers.cpu().numpy(), np.cumsum(g.natoms.cpu().numpy())[:-1])
            numbers += [c for c, keep in zip(counts, ok.tolist()) if keep]
            e_pred.append(e[ok].detach())
            e_true.append(b.energy[ok].to(torch.float64))
    finally:
        base.train(was_training)
    if not e_pred:
        raise ConfigError(f"head_from: no structure of dataset {task} in the first training batches to score the "
                          "base heads on")
    e_pred, e_true = torch.cat(e_pred).numpy(), torch.cat(e_true).numpy()
    natoms = np.array([len(n) for n in numbers], np.float64)
    prior = {int(z): float(v) for z, v in (prior_refs or {}).items()}
    prior_sum = np.array([sum(prior.get(int(z), 0.0) for z in n) for n in numbers])
    scores = []
    for k, j in enumerate(heads):
        refs, e_mae = dict(prior), None
        if len(e_true):
            with warnings.catch_warnings():  # one molecule's frames: only the sum of the references matters
                warnings.filterwarnings("ignore", "fit_atom_refs: element counts have rank", RuntimeWarning)
                delta = fit_refs(numbers, e_true - e_pred[:, k] - prior_sum)
            refs.update({z: prior.get(z, 0.0) + d for z, d in delta.items()})
            fitted = e_pred[:, k] + np.array([sum(refs[int(z)] for z in n) for n in numbers])
            e_mae = float(np.mean(np.abs(fitted - e_true) / natoms))
        f_mae = float(torch.cat(f_err[k]).mean()) if f_err[k] else None
        scores.append(HeadScore(base.heads[j].name, f_mae, e_mae, refs))
    return scores


def best_head(scores: list[HeadScore]) -> HeadScore:
    """The head with the lowest zero-shot force error, or energy error where there are no forces."""
    key = "force_mae" if all(s.force_mae is not None for s in scores) else "energy_mae"
    if any(getattr(s, key) is None for s in scores):
        raise ConfigError("head_from 'auto' needs energy or force labels in the training batches")
    return min(scores, key=lambda s: getattr(s, key))


def transfer_head(base: JMPModel, model: JMPModel, src: str, dst: int, atom_refs: dict[int, float]) -> None:
    """Copy base head ``src``'s energy MLP (and direct-force MLP where both have one) into ``model``'s head ``dst``,
    its last layer scaled from the base head's units to the new head's, and set the new head's references."""
    j = base.head_index(src)
    hs, hd = base.heads[j], model.heads[dst]
    if hs.reduction != hd.reduction:
        raise ConfigError(f"head_from: base head {src!r} pools energies by {hs.reduction}, the new head "
                          f"{hd.name!r} by {hd.reduction}")
    pairs = [(base.output.out_energy[j], model.output.out_energy[dst], hs.energy_std / hd.energy_std)]
    if len(base.output.out_forces) and len(model.output.out_forces):
        pairs.append((base.output.out_forces[j], model.output.out_forces[dst], hs.force_std / hd.force_std))
    with torch.no_grad():
        for s, d, scale in pairs:
            d.load_state_dict(s.state_dict())
            d[-1].weight.mul_(scale)  # the last Linear has no bias: outputs scale with it
    hd.atom_refs, hd.energy_mean = {int(z): float(v) for z, v in atom_refs.items()}, 0.0


def transfer_heads(base: JMPModel, model: JMPModel, energy_heads: dict[int, int], head_from: str, batches: list,
                   *, log=print) -> list[str]:
    """Start each of ``model``'s energy heads (``{head index: dataset index}``) from base head ``head_from`` (a
    name, or ``auto``: chosen per dataset); returns the notes for the model card. ``batches``: the first training
    batches (each head is scored, and its references fitted, on its dataset's structures in them)."""
    notes = []
    for i, task in energy_heads.items():
        scores = score_heads(base, batches, model.heads[i].reduction, direct=model.heads[i].direct_forces,
                             task=task, prior_refs=model.heads[i].atom_refs)
        if head_from == "auto":
            pick = best_head(scores)
        else:
            match = [s for s in scores if s.name == head_from]
            if not match:
                raise ConfigError(f"head_from: the base has no head {head_from!r} (with reduction "
                                  f"{model.heads[i].reduction}); its heads are {base.head_names}")
            pick = match[0]
        log("zero-shot on the first training batches: " + "; ".join(s.describe() for s in scores))
        transfer_head(base, model, pick.name, i, pick.atom_refs)
        notes.append(f"head {model.heads[i].name} started from the base's {pick.name} head (zero-shot "
                     f"{pick.errors()})")
        log(notes[-1])
    return notes
