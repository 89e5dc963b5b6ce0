"""The original JMP implementation's training step on the structures ``benchmarks/train_step.py`` trains ours on.

Run by ``train_step.py --reference PYTHON`` (which writes the draws with ``--dump``), in the reference venv of
``../shared/reference`` (torch_scatter etc.; see its README) with ``JMP_SRC`` pointing at JMP's ``src/``:

    JMP_SRC=/work/jmpsrc/src /work/refvenv/bin/python benchmarks/train_step_reference.py DUMP.npz [--threads 1]

Like for like with our step: the same structures in the same batches, the backbone sizes, ``absolute_rbf_cutoff``,
``qint_tags`` and edge dropout of our model's config, one head per dataset, each dataset's graph rule (cutoff, the
four neighbour caps, periodicity), AdamW with the run's betas / weight decay / learning rate, gradient clipping
at the run's norm. Everything is the original's own code: ``PretrainModel._generate_graphs(training=True)``
(radius graph, a2a edge dropout, sub-selected graphs, tag mask), ``data_transform``, ``collate_fn``, the forward
pass and ``compute_losses`` (energy L1 + structure-wise force L2, per-task masks; its ``self.log`` calls are
no-ops outside a Trainer). Conservative forces: the backbone without its direct-force branch
(``regress_forces=False``), the energy heads of the original's ``Output``, forces ``-dE/dpos`` with
``create_graph=True``. What differs: the original has no ``dihedral_basis="smooth"`` (our ``configs/mini_s.yaml``
uses it; it always evaluates JMP's spherical-harmonics dihedral basis), so ``train_step.py`` also times our model
with JMP's basis for the like-for-like ratio.

Prints one JSON line: per force kind, seconds per step (wall and thread-CPU medians) and collate seconds per batch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dump", help="the .npz that train_step.py --dump wrote")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--kinds", nargs="+", default=["direct", "conservative"])
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    # the harness of ../shared/reference (JMPREF_DIR elsewhere, e.g. when run from a worktree)
    sys.path.insert(0, os.environ.get("JMPREF_DIR", str(ROOT.parent / "shared" / "reference")))
    if not os.environ.get("JMP_SRC"):
        raise SystemExit("set JMP_SRC to the JMP checkout's src/ directory")
    import jmpref
    from jmp.modules.dataset.concat_dataset import _update_task_idx_transform
    from jmp.utils.goc_graph import Cutoffs, MaxNeighbors
    from torch_geometric.data import Data
    from torch_scatter import scatter

    z = np.load(args.dump, allow_pickle=False)
    meta = json.loads(str(z["meta"]))
    tasks = meta["tasks"]
    bb = dict(jmpref.BackboneConfig.base())
    bb.update({k: v for k, v in meta["backbone"].items()})
    backbone = jmpref.BackboneConfig(**bb)
    cfg = jmpref.PretrainConfig.draft()  # the recipe of jmpref.make_pretrain_config, with one task per dataset
    jmpref.jmp_l_pt_config_(cfg)
    cfg.num_workers = 0
    cfg.batch_size = int(meta["batch_size"])
    cfg.backbone = backbone
    cfg.embedding = jmpref.EmbeddingConfig(num_elements=backbone.num_elements, embedding_size=backbone.emb_size_atom)
    cfg.tasks = [jmpref.TaskConfig(
        name=t["name"], train_dataset=jmpref.PretrainDatasetConfig(src=Path(f"/datasets/{t['name']}/train/")),
        val_dataset=jmpref.PretrainDatasetConfig(src=Path(f"/datasets/{t['name']}/val/")),
        energy_loss_scale=t["energy_weight"], force_loss_scale=t["force_weight"],
        normalization={"y": jmpref.NormalizationConfig(mean=0.0, std=t["energy_std"]),
                       "force": jmpref.NormalizationConfig(mean=0.0, std=t["force_std"])}) for t in tasks]
    cfg.edge_dropout = meta["edge_dropout"]
    cfg = cfg.finalize()
    opt_cfg = meta["optim"]

    # the structures, cut back into per-structure arrays
    nat = z["natoms"]
    starts = np.concatenate([[0], np.cumsum(nat)])
    structs = []
    for i in range(len(nat)):
        a, b = starts[i], starts[i + 1]
        structs.append(dict(numbers=z["numbers"][a:b], positions=z["positions"][a:b], cell=z["cell"][i],
                            tags=z["tags"][a:b], fixed=z["fixed"][a:b], energy=float(z["energy"][i]),
                            forces=z["forces"][a:b], task=int(z["task"][i])))
    bs = int(meta["batch_size"])
    batches_idx = [list(range(k, min(k + bs, len(structs)))) for k in range(0, len(structs), bs)]

    def make_batch(model, idx, conservative: bool):
        """Graphs by the original's transforms; for -dE/dx the positions are leaves that require grad before
        the graphs are made (the original takes edge vectors from the graphs, as jmpref.grad_forces does)."""
        datas, leaves = [], []
        for i in idx:
            s, t = structs[i], tasks[structs[i]["task"]]
            n = len(s["numbers"])
            pos = torch.tensor(s["positions"], dtype=torch.float32, requires_grad=conservative)
            leaves.append(pos)
            d = Data(pos=pos,
                     atomic_numbers=torch.tensor(s["numbers"], dtype=torch.long),
                     cell=torch.tensor(s["cell"], dtype=torch.float32).view(1, 3, 3), natoms=n,
                     tags=torch.tensor(s["tags"], dtype=torch.long),
                     fixed=torch.tensor(s["fixed"], dtype=torch.bool),
                     y=torch.tensor([s["energy"] / t["energy_std"]], dtype=torch.float32),
                     force=torch.tensor(s["forces"] / t["force_std"], dtype=torch.float32), sid=i)
            g = t["graph"]
            d = model._generate_graphs(d, cutoffs=Cutoffs.from_constant(g["cutoff"]),
                                       max_neighbors=MaxNeighbors(main=g["main"], aeaint=g["a2ee2a"],
                                                                  qint=g["qint"], aint=g["a2a"]),
                                       pbc=bool(g["pbc"]), training=True)  # training: a2a edge dropout
            d.y_scale, d.force_scale = t["energy_weight"], t["force_weight"]
            d = _update_task_idx_transform(d, task_idx=s["task"], num_tasks=len(tasks),
                                           taskify_keys_graph=["y", "y_scale", "force_scale"],
                                           taskify_keys_node=["force"])
            datas.append(model.data_transform(d))
        return model.collate_fn(datas), leaves

    def energies(model, batch):
        """The original Output's energy half on a backbone without the direct-force branch."""
        out = model.backbone(batch, h=model.embedding(batch))
        n_mol = int(batch.batch.max()) + 1
        return torch.cat([scatter(mlp(out["energy"]), batch.batch, dim=0, dim_size=n_mol, reduce="sum")
                          for mlp in model.output.out_energy], dim=1)  # (b, t)

    result = {"threads": args.threads, "batch_size": bs, "steps": len(batches_idx) - args.warmup}
    for kind in args.kinds:
        torch.manual_seed(0)
        model = jmpref.build_model(cfg)
        jmpref.set_seeded_scale_factors(model, seed=0)
        model.log = lambda *a, **k: None  # compute_losses logs; there is no Trainer here
        model.log_dict = model.log
        model.train()
        cons = kind == "conservative"
        model.backbone.regress_forces = not cons
        torch.manual_seed(0)  # dropout_edge draws from torch's global generator
        t0 = time.perf_counter()
        batches = [make_batch(model, idx, cons) for idx in batches_idx]
        t_coll = (time.perf_counter() - t0) / len(batches)
        opt = torch.optim.AdamW(model.parameters(), lr=opt_cfg["lr"], betas=tuple(opt_cfg["betas"]),
                                weight_decay=opt_cfg["weight_decay"])
        wall, cpu = [], []
        for k, (batch, leaves) in enumerate(batches):
            t0, c0 = time.perf_counter(), time.thread_time()
            if cons:
                E = energies(model, batch)
                e_own = E.gather(1, batch.task_idx.view(-1, 1)).sum()
                f = -torch.cat(torch.autograd.grad(e_own, leaves, create_graph=True))
                F = f[:, :, None].expand(-1, -1, len(tasks))
            else:
                E, F = model(batch)
            loss = model.compute_losses(batch, energy=E, forces=F)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), opt_cfg["grad_clip"] or 1e9)
            opt.step()
            if k >= args.warmup:
                wall.append(time.perf_counter() - t0)
                cpu.append(time.thread_time() - c0)
            if not torch.isfinite(loss):
                raise SystemExit(f"reference: non-finite loss at step {k}")
        result[kind] = {"wall_s": statistics.median(wall), "cpu_s": statistics.median(cpu),
                        "wall_mean_s": sum(wall) / len(wall), "cpu_mean_s": sum(cpu) / len(cpu),
                        "collate_s": t_coll, "loss": float(loss),
                        "params": sum(p.numel() for p in model.parameters())}
    print("REFERENCE " + json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
