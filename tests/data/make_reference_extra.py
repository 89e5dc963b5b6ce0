"""Regenerate tests/data/reference_extra.npz and tests/data/jmp-ref-small.pt with the ORIGINAL JMP code.

The parity fixtures in ../shared/fixtures cover ethanol and bulk Cu with one checkpoint. This script adds
structures and a checkpoint they do not contain, so our tests check conventions rather than memorised numbers:
aspirin, a rattled C60 (molecular k-NN truncation), a Pt(111) slab with CO (catalysis tags 0/1/2), rattled rock-salt
NaCl, and a small triclinic cell (many periodic images); a second random checkpoint with other sizes (3 blocks,
num_concat 2, ...) in the Lightning layout, with EMA weights.

It only calls the thin harness of ../shared/reference (jmpref.py), i.e. JMP's own code paths. Run with the
reference venv (see ../shared/reference/README.md):

    JMP_SRC=/path/to/JMP/src /tmp/jmp-ref/venv/bin/python tests/data/make_reference_extra.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared"
sys.path.insert(0, str(SHARED / "reference"))
import jmpref  # noqa: E402

SEED = 2024


def _f32(x):
    return np.asarray(np.asarray(x, dtype=np.float32), dtype=np.float64)


def _pack(atoms, tags, task, name):
    return {"name": name, "numbers": np.asarray(atoms.get_atomic_numbers(), np.int64),
            "positions": np.asarray(atoms.get_positions(), np.float64), "cell": _f32(atoms.get_cell().array),
            "pbc": np.asarray(atoms.get_pbc(), bool), "tags": np.asarray(tags, np.int64), "task": task}


def kth_gap(atoms_pos, cell, pbc, cutoff, ks=(30, 20, 8)):
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    at = Atoms(positions=atoms_pos, cell=cell, pbc=pbc)
    i, d = neighbor_list("id", at, cutoff)
    gaps = []
    for a in range(len(at)):
        dd = np.sort(d[i == a])
        for k in ks:
            if len(dd) > k:
                gaps.append(dd[k] - dd[k - 1])
    return min(gaps) if gaps else np.inf


def structures():
    from ase import Atoms
    from ase.build import add_adsorbate, bulk, fcc111, molecule
    from rdkit import Chem
    from rdkit.Chem import AllChem

    out = []
    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)OC1=CC=CC=C1C(=O)O"))
    AllChem.EmbedMolecule(mol, randomSeed=42)
    AllChem.MMFFOptimizeMolecule(mol)
    pos = mol.GetConformer().GetPositions()
    asp = Atoms([a.GetAtomicNum() for a in mol.GetAtoms()], positions=pos)
    out.append(_pack(asp, np.full(len(asp), 2), "ani1x", "aspirin"))

    for seed in range(100):
        c60 = molecule("C60")
        c60.positions += np.random.default_rng(seed).normal(0, 0.05, c60.positions.shape)
        if kth_gap(c60.positions, np.zeros((3, 3)), False, 8.0) > 1e-3:
            break
    out.append(_pack(c60, np.full(len(c60), 2), "transition1x", f"c60_rattled_seed{seed}"))

    for seed in range(100):
        slab = fcc111("Pt", size=(3, 3, 3), vacuum=10.0)
        add_adsorbate(slab, molecule("CO"), 1.9, "ontop")
        slab.set_pbc(True)
        tags = slab.get_tags().copy()
        tags[tags == 1] = 1
        tags[tags > 1] = 0  # fcc111 tags layers 1..3 from the top; subsurface layers are bulk (0)
        tags[-2:] = 2
        slab.positions += np.random.default_rng(seed).normal(0, 0.03, slab.positions.shape)
        slab.set_cell(_f32(slab.cell.array))
        if kth_gap(slab.positions, slab.cell.array, True, 12.0) > 1e-3:
            break
    out.append(_pack(slab, tags, "oc20", f"pt111_co_seed{seed}"))

    for seed in range(200):
        # 2x2x2 conventional cells: in one 8-atom cell the 30th neighbour falls among +-a self-images, an exact tie
        nacl = bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat((2, 2, 2))
        nacl.positions += np.random.default_rng(seed).normal(0, 0.1, nacl.positions.shape)
        nacl.wrap()
        if kth_gap(nacl.positions, nacl.cell.array, True, 12.0) > 1e-3:
            break
    out.append(_pack(nacl, np.full(len(nacl), 2), "oc22", f"nacl_rattled_seed{seed}"))

    for seed in range(200):
        rng = np.random.default_rng(seed)
        cell = _f32(np.array([[3.1, 0.0, 0.0], [0.9, 2.9, 0.0], [0.6, 0.7, 3.3]]) + rng.normal(0, 0.05, (3, 3)))
        tri = Atoms("MgO2", scaled_positions=rng.random((3, 3)), cell=cell, pbc=True)
        ok_min = True
        from ase.neighborlist import neighbor_list

        d = neighbor_list("d", tri, 2.0)
        if len(d) and d.min() < 1.4:
            ok_min = False
        if ok_min and kth_gap(tri.positions, cell, True, 12.0) > 1e-3:
            break
    out.append(_pack(tri, np.full(len(tri), 2), "oc20", f"triclinic_mgo2_seed{seed}"))
    return out


SMALL_BACKBONE = dict(jmpref.TINY_BACKBONE, num_blocks=3, emb_size_atom=24, emb_size_edge=40, num_concat=2,
                      num_atom=1, num_output_afteratom=1, num_atom_emb_layers=2, num_global_out_layers=2,
                      num_radial=12, emb_size_sbf=12, emb_size_trip_out=12)


def make_small_checkpoint(path: Path):
    d = dict(jmpref.BackboneConfig.base())
    d.update(SMALL_BACKBONE)
    config = jmpref.make_pretrain_config(jmpref.BackboneConfig(**d))
    model = jmpref.build_model(config, seed=SEED)
    jmpref.set_seeded_scale_factors(model, seed=SEED + 1)
    sd = model.state_dict()
    names = jmpref.ema_param_names_from_state_dict(sd)
    g = torch.Generator().manual_seed(SEED + 2)
    ema = tuple(sd[n] + 0.05 * max(float(sd[n].abs().mean()), 1e-3) * torch.randn(sd[n].shape, generator=g)
                for n in names)
    hp = {"backbone": d, "embedding": {"num_elements": 120, "embedding_size": d["emb_size_atom"]},
          "output": {"num_mlps": 5},
          "tasks": [{"name": t, "node_energy_reduction": "sum",
                     "normalization": {"y": {"mean": 0.0, "std": jmpref.NORMALIZATION[t]["y"][1]},
                                       "force": {"mean": 0.0, "std": jmpref.NORMALIZATION[t]["force"][1]}}}
                    for t in jmpref.TASKS]}
    ckpt = {"epoch": 0, "global_step": 0, "state_dict": dict(sd), "hyper_parameters": hp,
            "optimizer_states": [{"ema": ema, "decay": 0.99}]}
    torch.save(ckpt, path)
    return config, ckpt


def run(model, structs, dtype):
    res = {}
    for s in structs:
        batch, _, leaves = jmpref.prepare_batch(model, [s], [s["task"]], dtype=dtype, requires_grad=True)
        E, F = jmpref.run_model(model, batch, dtype=dtype)
        Fg = jmpref.grad_forces(E, leaves)[0]
        _, sym, _ = jmpref.main_graph_used(model, batch)
        res[s["name"]] = (E[0].detach().numpy(), F.detach().numpy(), Fg.detach().numpy(),
                          int(sym["edge_index"].shape[1]), int(batch.a2a_edge_index.shape[1]))
    return res


def main():
    torch.set_num_threads(1)
    structs = structures()
    arrays = {}
    ckpt_path = HERE / "jmp-ref-small.pt"
    config, ckpt = make_small_checkpoint(ckpt_path)
    tiny_ckpt = torch.load(SHARED / "fixtures" / "jmp-tiny-random.pt", map_location="cpu", weights_only=False)
    tiny_cfg = jmpref.make_pretrain_config(jmpref.BackboneConfig(**dict(tiny_ckpt["hyper_parameters"]["backbone"])))
    for s in structs:
        for key in ("numbers", "positions", "cell", "pbc", "tags"):
            arrays[f"{s['name']}/{key}"] = s[key]
        arrays[f"{s['name']}/task"] = np.array(s["task"])
    for cname, cfg, ck in (("tiny", tiny_cfg, tiny_ckpt), ("small", config, ckpt)):
        for ema in (False, True):
            model = jmpref.build_model(cfg)
            jmpref.load_ckpt_into_model(model, ck, use_ema=ema)
            for dtype, dname in ((torch.float64, "float64"), (torch.float32, "float32")):
                m = model.to(dtype)
                for name, (E, F, Fg, ne, na) in run(m, structs, dtype).items():
                    p = f"{cname}/{'ema' if ema else 'raw'}/{dname}/{name}"
                    arrays[p + "/energy"], arrays[p + "/forces_direct"], arrays[p + "/forces_grad"] = E, F, Fg
                    arrays[p + "/n_main_edges"], arrays[p + "/n_a2a_edges"] = np.array(ne), np.array(na)
                    print(p, E, ne, na, flush=True)
    np.savez_compressed(HERE / "reference_extra.npz", **arrays)


if __name__ == "__main__":
    main()
