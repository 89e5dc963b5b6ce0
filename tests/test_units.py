"""jmp_calc.units: the one conversion from a head's model units to eV, used by the calculator and the trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jmp_calc.config import GraphConfig, HeadConfig
from jmp_calc.units import HeadUnits


def _heads():
    g = GraphConfig(cutoff=5.0, max_neighbors=12)
    return [HeadConfig(name="sum", energy_std=2.0, energy_mean=0.5, force_std=0.3, graph=g,
                       atom_refs={1: -0.5, 8: -75.0}),
            HeadConfig(name="mean", energy_std=0.1, energy_mean=-3.0, reduction="mean", graph=g)]


def test_energy_node_energy_and_forces_in_ev():
    u = HeadUnits(_heads(), num_elements=10)
    numbers = torch.tensor([8, 1, 1, 8, 1])
    batch = torch.tensor([0, 0, 0, 1, 1])
    natoms = torch.tensor([3, 2])
    heads = torch.tensor([0, 1])  # structure 0 by the sum head, structure 1 by the mean head
    y_node = torch.tensor([0.2, -0.1, 0.3, 1.0, 3.0], dtype=torch.float64)
    y = torch.stack([y_node[:3].sum(), y_node[3:].mean()])
    e = u.energy(y, heads, batch, numbers)
    assert e[0].item() == pytest.approx(2.0 * 0.4 + 0.5 - 75.0 - 1.0)
    assert e[1].item() == pytest.approx(0.1 * 2.0 - 3.0)  # no references
    per_atom = u.node_energy(y_node, heads, batch, numbers, natoms)
    assert torch.allclose(torch.zeros(2, dtype=torch.float64).index_add_(0, batch, per_atom), e)
    f = u.forces(torch.ones(5, 3), heads, batch)
    assert torch.equal(f[:3], torch.full((3, 3), 0.3, dtype=torch.float64))
    assert torch.equal(f[3:], torch.full((2, 3), _heads()[1].force_std, dtype=torch.float64))
    assert not u.state_dict()  # constants of the head configs, never saved in checkpoints


def test_trainer_energies_are_the_calculators():
    """The loss compares labels with the calculator's eV energies: JMPTrainModule and Potential give the same
    energies (and direct forces) for the same model, heads and structures."""
    pytest.importorskip("lightning")
    from ase.build import molecule

    from jmp_calc.config import tiny
    from jmp_calc.model import JMPModel
    from jmp_calc.potential import Potential
    from training.batching import Collater
    from training.config import OptimConfig
    from training.data.base import Sample
    from training.module import JMPTrainModule
    from training.task import Task

    torch.manual_seed(0)
    heads = _heads()
    model = JMPModel(tiny(direct_forces=True), heads).eval()  # float32, as trained
    mols = [molecule("H2O"), molecule("CH3OH")]
    for m in mols:
        m.center(vacuum=4.0)
        m.rattle(0.01, seed=1)  # no k-NN ties
    tasks = [Task(h.name, h.graph, head=i, energy=True, forces="direct") for i, h in enumerate(heads)]
    trainer = JMPTrainModule(model, tasks, OptimConfig())
    for i, h in enumerate(heads):
        samples = [(Sample(m.numbers, m.positions, energy=0.0, forces=m.positions * 0), i) for m in mols]
        b = Collater(tasks, model.config.qint_tags)(samples)
        with torch.no_grad():
            out = model(b.g, direct_forces=True)
        e_train = trainer._energies(out["energy"], b.g, b.task)
        f_train = trainer.units.forces(out["forces"][torch.arange(b.g.pos.shape[0]), :, i], b.task, b.g.batch)
        pot = Potential(model, head=h.name, forces="direct", dtype="float32")
        pred = pot.predict(mols)
        assert torch.allclose(e_train, torch.tensor([p["energy"] for p in pred], dtype=torch.float64), rtol=1e-6)
        assert torch.allclose(f_train, torch.tensor(np.concatenate([p["forces"] for p in pred])), rtol=1e-5,
                              atol=1e-6)
