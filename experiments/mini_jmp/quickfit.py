"""Fit a small GemNet-OC potential (energy + conservative forces [+ stress]) on extxyz files, in plain PyTorch.

This is the small, dependency-free trainer used to make the model shipped inside jmp_calc; the full JMP recipe
(multi-task pre-training, fine-tuning heads, Lightning, DDP) lives in ``training.pretrain`` / ``training.finetune``.

    python -m experiments.mini_jmp.quickfit --train data/emt/train.extxyz --valid data/emt/valid.extxyz \\
        --test data/emt/test.extxyz --out jmp_calc/models/jmp-mini-emt --max-time 15

Writes a jmp_calc model directory (model.safetensors + config.json + README.md card) and ``NAME.metrics.csv`` beside
it (the curve of the shipped model: experiments/mini_jmp/jmp-mini-emt.metrics.csv).
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from jmp_calc.config import GemNetOCConfig, GraphConfig, HeadConfig, tiny
from jmp_calc.graph.batch import collate
from jmp_calc.graph.structures import as_structure, build_graphs
from jmp_calc.io import save_model
from jmp_calc.model import JMPModel
from jmp_calc.potential import differentiable_geometry
from jmp_calc.units import HeadUnits


def read_frames(path: Path):
    from ase.io import read

    frames = read(path, index=":")
    out = []
    for i, at in enumerate(frames):
        try:
            e = at.get_potential_energy()
            f = at.get_forces(apply_constraint=False)
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"{path}: frame {i} has no energy/forces ({exc})") from None
        s = None
        if at.pbc.all():
            try:
                s = at.get_stress(voigt=False)
            except Exception:  # noqa: BLE001
                s = None
        out.append((at, float(e), np.asarray(f), s))
    return out


def fit_atom_refs(frames, max_z: int = 120) -> dict[int, float]:
    zs = sorted({int(z) for at, *_ in frames for z in at.numbers})
    a = np.zeros((len(frames), len(zs)))
    y = np.array([e for _, e, *_ in frames])
    for i, (at, *_) in enumerate(frames):
        for j, z in enumerate(zs):
            a[i, j] = np.sum(at.numbers == z)
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    return {z: float(c) for z, c in zip(zs, coef)}


class Data:
    """Frames with graphs built once (topology fixed per frame)."""

    def __init__(self, frames, head: HeadConfig, qint_tags):
        self.items = []
        for at, e, f, s in frames:
            st = as_structure(at)
            g = build_graphs(st, head.graph, qint_tags, head.set_tags_to)
            self.items.append((st, g, e, f, s))

    def batches(self, batch_size: int, rng: np.random.Generator | None):
        idx = np.arange(len(self.items)) if rng is None else rng.permutation(len(self.items))
        for k in range(0, len(idx), batch_size):
            yield [self.items[i] for i in idx[k:k + batch_size]]


def _forward(model, items, units, head: HeadConfig, train: bool, stress_weight: float):
    structs = [it[0] for it in items]
    g = collate([it[1] for it in items], [s.positions for s in structs], [s.numbers for s in structs],
                [s.cell for s in structs])
    pos, eps, p, cell = differentiable_geometry(g, positions=True, strain=True)
    out = model(g, pos=p, cell=cell, direct_forces=False)
    energy = units.energy(out["energy"][:, 0], g.batch.new_zeros(g.num_structures), g.batch, g.numbers)  # eV
    grads = torch.autograd.grad(energy.sum(), [pos, eps], create_graph=train)
    forces = -grads[0]
    vol = torch.abs(torch.linalg.det(g.cell)).clamp(min=1e-9)
    stress = grads[1] / vol[:, None, None]
    e_true = torch.tensor([it[2] for it in items], dtype=torch.float32)
    f_true = torch.as_tensor(np.concatenate([it[3] for it in items]), dtype=torch.float32)
    natoms = g.natoms.float()
    e_err = (energy - e_true) / natoms
    f_err = forces - f_true
    loss = (e_err / head.energy_std).pow(2).mean() + 10.0 * (f_err / head.energy_std).pow(2).mean()
    has_s = [i for i, it in enumerate(items) if it[4] is not None]
    s_abs = None
    if has_s:
        s_true = torch.as_tensor(np.stack([items[i][4] for i in has_s]), dtype=torch.float32)
        s_err = stress[has_s] - s_true
        loss = loss + stress_weight * (s_err / 0.01).pow(2).mean()
        s_abs = s_err.abs().detach()
    return loss, e_err.abs().detach(), f_err.abs().detach(), s_abs


def evaluate(model, data: Data, units, head, batch_size=16):
    model.eval()
    e, f, s = [], [], []
    for items in data.batches(batch_size, None):
        _, ea, fa, sa = _forward(model, items, units, head, train=False, stress_weight=0.0)
        e.append(ea), f.append(fa.reshape(-1))
        if sa is not None:
            s.append(sa.reshape(-1))
    return {"energy_mae_ev_per_atom": float(torch.cat(e).mean()), "forces_mae_ev_per_a": float(torch.cat(f).mean()),
            "stress_mae_ev_per_a3": float(torch.cat(s).mean()) if s else float("nan")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, required=True)
    ap.add_argument("--valid", type=Path, required=True)
    ap.add_argument("--test", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--name", default="jmp-mini-emt")
    ap.add_argument("--max-time", type=float, default=15.0, help="minutes")
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--cutoff", type=float, default=5.0)
    ap.add_argument("--max-neighbors", type=int, default=18, help="main graph cap (fcc: 12 + 6 = two shells)")
    ap.add_argument("--max-neighbors-a2ee2a", type=int, default=18)
    ap.add_argument("--max-neighbors-qint", type=int, default=12, help="fcc: the first shell")
    ap.add_argument("--dihedral-basis", default="smooth", choices=["smooth", "legendre"],
                    help="smooth: continuous at collinear triplets (see GemNetOCConfig.dihedral_basis)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--description", default="EMT (ASE) energies, forces and stress of metal slabs with H/C/N/O "
                                              "adsorbates and strained bulk metals (Cu Ag Au Ni Pd Pt Al)")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    train_frames, valid_frames = read_frames(args.train), read_frames(args.valid)
    refs = fit_atom_refs(train_frames)
    resid = np.array([(e - sum(refs[int(z)] for z in at.numbers)) / len(at) for at, e, *_ in train_frames])
    energy_std = float(max(np.sqrt(np.mean(resid**2)), 1e-3))
    cfg: GemNetOCConfig = tiny(absolute_rbf_cutoff=args.cutoff, direct_forces=False, dihedral_basis=args.dihedral_basis)
    head = HeadConfig(name="energy", energy_std=energy_std, direct_forces=False, atom_refs=refs,
                      graph=GraphConfig(cutoff=args.cutoff, max_neighbors=args.max_neighbors, pbc=None,
                                        max_neighbors_a2ee2a=args.max_neighbors_a2ee2a,
                                        max_neighbors_qint=args.max_neighbors_qint))
    model = JMPModel(cfg, [head])
    units = HeadUnits([head], cfg.num_elements, torch.float32)  # model units -> eV, as the calculator
    train, valid = Data(train_frames, head, cfg.qint_tags), Data(valid_frames, head, cfg.qint_tags)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    deadline = time.time() + args.max_time * 60
    rng = np.random.default_rng(args.seed)
    ema = copy.deepcopy(model)
    best, best_state, rows = float("inf"), None, []
    start = time.time()
    step = 0
    from tqdm import tqdm

    for epoch in range(args.epochs):
        model.train()
        t_epoch = time.time()
        for items in tqdm(list(train.batches(args.batch_size, rng)), desc=f"epoch {epoch}", leave=False):
            frac = min(1.0, (time.time() - start) / (deadline - start))  # cosine over the time budget
            for grp in opt.param_groups:
                grp["lr"] = args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac))) * min(1.0, (step + 1) / 50)
            loss, *_ = _forward(model, items, units, head, train=True, stress_weight=1.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            step += 1
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.mul_(0.99).add_(pm, alpha=0.01)
        metrics = evaluate(ema, valid, units, head)
        rows.append({"epoch": epoch, "wall_s": round(time.time() - start, 1), "lr": opt.param_groups[0]["lr"],
                     **{f"valid_{k}": v for k, v in metrics.items()}})
        score = metrics["energy_mae_ev_per_atom"] + metrics["forces_mae_ev_per_a"]
        print(f"epoch {epoch} ({time.time() - t_epoch:.0f} s): valid E {metrics['energy_mae_ev_per_atom']*1000:.1f} "
              f"meV/atom, F {metrics['forces_mae_ev_per_a']*1000:.0f} meV/A, "
              f"S {metrics['stress_mae_ev_per_a3']*1000:.2f} meV/A^3", flush=True)
        if score < best:
            best, best_state = score, copy.deepcopy(ema.state_dict())
        if time.time() + (time.time() - t_epoch) > deadline:
            break
    ema.load_state_dict(best_state)
    card = {
        "name": args.name, "task": "energy, conservative forces and stress", "level_of_theory": "ASE EMT",
        "units": {"energy": "eV", "forces": "eV/A", "stress": "eV/A^3"},
        "elements": sorted(int(z) for z in refs), "forces": {"energy": "conservative"}, "default_head": "energy",
        "dispersion": False, "license": "MIT", "training_data": args.description,
        "n_train_frames": len(train.items), "n_valid_frames": len(valid.items),
        "valid_metrics": evaluate(ema, valid, units, head), "epochs": len(rows),
        "trained_from": "scratch (random init), experiments.mini_jmp.quickfit",
    }
    if args.test:
        test = Data(read_frames(args.test), head, cfg.qint_tags)
        card["test_metrics"] = evaluate(ema, test, units, head)
        card["n_test_frames"] = len(test.items)
    readme = (f"# {args.name}\n\nA small GemNet-OC potential ({sum(p.numel() for p in ema.parameters()):,} "
              f"parameters, {args.cutoff} A graph) trained from scratch with `experiments.mini_jmp.quickfit` on "
              f"{card['training_data']}.\n\nIt is the offline default model of jmp_calc: fine for demos and tests on "
              "metals and small adsorbates; it knows nothing outside EMT's elements and is only as good as EMT.\n\n"
              f"```json\n{json.dumps({k: card[k] for k in card if k.endswith('metrics')}, indent=1)}\n```\n")
    save_model(ema, args.out, card=card, readme=readme, overwrite=True)
    with open(args.out.parent / f"{args.name}.metrics.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(json.dumps({k: card[k] for k in card if k.endswith("metrics")}, indent=1))


if __name__ == "__main__":
    main()
