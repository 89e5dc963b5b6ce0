"""Shared test helpers. Reference data, all inside the repository (a clone tests itself): tests/data/fixtures (the
original JMP implementation's outputs, copied from the project's shared/fixtures; see its README) and tests/data (more
of them, made by tests/data/make_reference_extra.py with the original code)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
FIXTURES = DATA / "fixtures"
TINY_CKPT = FIXTURES / "jmp-tiny-random.pt"
SMALL_CKPT = DATA / "jmp-ref-small.pt"
HEADS = ["oc20", "oc22", "ani1x", "transition1x"]

torch.set_num_threads(min(2, torch.get_num_threads()))


def require_fixtures() -> Path:
    if not TINY_CKPT.is_file():
        pytest.fail(f"parity fixtures not found at {FIXTURES}: the checkout is incomplete (git lfs / sparse?)")
    return FIXTURES


@pytest.fixture(scope="session")
def fixtures_npz():
    require_fixtures()
    return np.load(FIXTURES / "reference_outputs.npz")


@pytest.fixture(scope="session")
def extra_npz():
    return np.load(DATA / "reference_extra.npz")


def rel_err(a, b) -> float:
    """Relative error ||a - b|| / ||b|| (Frobenius norm over all entries), in float64."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def structure_from(npz, name: str, task: str) -> dict:
    return dict(numbers=npz[f"{name}/numbers"], positions=npz[f"{name}/positions"], cell=npz[f"{name}/cell"],
                tags=npz[f"{name}/tags"], pbc=[task in ("oc20", "oc22")] * 3)


def run_all_heads(model, structures: list[dict], tasks: list[str], dtype=torch.float64):
    """Model-unit energies (B, 4), direct forces (N, 3, 4) and -dE/dx (N, 3, 4), each structure's graph built with
    the graph rules of its own task (as JMP's multi-task pre-training does)."""
    from jmp_calc.graph.batch import collate
    from jmp_calc.graph.structures import as_structure, build_graphs

    model = model.to(dtype)
    graphs = []
    for s, t in zip(structures, tasks):
        head = model.heads[model.head_index(t)]
        graphs.append(build_graphs(as_structure(s), head.graph, model.config.qint_tags, head.set_tags_to))
    structs = [as_structure(s) for s in structures]
    g = collate(graphs, [s.positions for s in structs], [s.numbers for s in structs], [s.cell for s in structs],
                dtype=dtype)
    pos = g.pos.clone().requires_grad_(True)
    out = model(g, pos=pos)
    energy = out["energy"]
    grads = [-torch.autograd.grad(energy[:, t].sum(), pos, retain_graph=True)[0] for t in range(energy.shape[1])]
    return (energy.detach().numpy(), out["forces"].detach().numpy(), torch.stack(grads, -1).detach().numpy(), g)
