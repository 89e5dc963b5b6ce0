"""The training step's bookkeeping made faster stays exact: the EMA's multi-tensor update equals the per-tensor
update it replaced (bitwise, across a validation swap), the optimiser's foreach AdamW equals the loop
implementation, and batches keep every tensor through ``to`` / ``pin_memory``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("lightning")

from jmp_calc.config import GraphConfig, HeadConfig, tiny  # noqa: E402
from jmp_calc.model import JMPModel  # noqa: E402
from training.batching import Collater, TrainBatch  # noqa: E402
from training.config import OptimConfig  # noqa: E402
from training.data.base import Sample  # noqa: E402
from training.module import EMA, JMPTrainModule, layerwise_groups  # noqa: E402
from training.task import Task  # noqa: E402


def _model(seed=0):
    torch.manual_seed(seed)
    return JMPModel(tiny(num_blocks=1), [HeadConfig(name="a", energy_std=2.0, force_std=0.5)])


class _Module:  # what the EMA callback reads of a LightningModule
    def __init__(self, model):
        self.model = model


def _perturb(model, gen):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=gen))


def test_ema_multi_tensor_update_equals_the_per_tensor_update():
    model = _model()
    mod = _Module(model)
    ema = EMA(0.9)
    ema.on_fit_start(None, mod)
    ref = {k: v.clone() for k, v in model.state_dict().items()}  # the update as it was: lerp_ per tensor
    gen = torch.Generator().manual_seed(1)
    for step in range(6):
        _perturb(model, gen)
        ema.on_train_batch_end(None, mod, None, None, step)
        for k, v in model.state_dict().items():
            ref[k].lerp_(v, 0.1) if v.dtype.is_floating_point else ref[k].copy_(v)
        if step == 2:  # validation swaps the averaged weights in and out (in place): the pairing must survive
            live = {k: v.clone() for k, v in model.state_dict().items()}
            ema.swap_in(mod)
            assert all(torch.equal(v, ema.shadow[k]) for k, v in model.state_dict().items())
            ema.swap_out(mod)
            assert all(torch.equal(v, live[k]) for k, v in model.state_dict().items())
    assert ema.shadow.keys() == ref.keys()
    for k in ref:
        assert torch.equal(ema.shadow[k], ref[k]), k
    assert any(not torch.equal(ema.shadow[k], v) for k, v in model.state_dict().items())  # it averages
    # a state restored from a checkpoint is what the next updates average into
    state = ema.state_dict()
    ema2 = EMA(0.9)
    ema2.load_state_dict({k: ({n: t.clone() for n, t in v.items()} if isinstance(v, dict) else v)
                          for k, v in state.items()})
    ema2.on_fit_start(None, mod)
    _perturb(model, gen)
    ema.on_train_batch_end(None, mod, None, None, 6)
    ema2.on_train_batch_end(None, mod, None, None, 6)
    assert all(torch.equal(ema.shadow[k], ema2.shadow[k]) for k in ref)


def test_optimizer_is_foreach_adamw_with_the_loop_results():
    optim = OptimConfig(lr=1e-3, weight_decay=0.1, betas=[0.9, 0.95], layer_decay=0.8)
    weights = {}
    for foreach in (True, False):
        model = _model()
        module = JMPTrainModule(model, [Task(name="a", graph=GraphConfig(cutoff=4.0, max_neighbors=8), head=0)],
                                optim)
        groups = layerwise_groups(model, optim.lr, optim.layer_decay, optim.weight_decay)
        opt = torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay,
                                foreach=foreach)
        if foreach:  # the module's own optimiser is this one (configure_optimizers asks the trainer for steps)
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(type(module), "trainer", property(lambda self: type("T", (), {
                    "estimated_stepping_batches": 10})()))
                own = module.configure_optimizers()["optimizer"]
            assert isinstance(own, torch.optim.AdamW) and own.defaults["foreach"] is True
            assert [g["initial_lr"] for g in own.param_groups] == [g["lr"] for g in opt.param_groups]
        gen = torch.Generator().manual_seed(3)
        for _ in range(5):
            for p in model.parameters():
                p.grad = torch.randn(p.shape, generator=gen)
            opt.step()
        weights[foreach] = [p.detach().clone() for p in model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(weights[True], weights[False]))


def _batch() -> TrainBatch:
    rng = np.random.default_rng(0)
    samples = []
    for n in (3, 5):
        pos = rng.uniform(0, 3, (n, 3))
        samples.append((Sample(numbers=np.full(n, 6), positions=pos, energy=-1.0 * n,
                               forces=rng.normal(size=(n, 3)), properties={"gap": 0.5}), 0))
    task = Task(name="a", graph=GraphConfig(cutoff=4.0, max_neighbors=8, pbc=False), head=0, energy=True,
                forces="direct", properties={"gap": (0, 1.0)})
    return Collater([task], [1, 2], ["gap"])(samples)


def _tensors(obj, prefix=""):
    import dataclasses

    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_tensors(v, f"{prefix}.{k}"))
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            out.update(_tensors(getattr(obj, f.name), f"{prefix}.{f.name}"))
    return out


def test_batch_to_keeps_every_tensor_and_the_sources():
    b = _batch()
    moved = b.to("cpu")
    before, after = _tensors(b), _tensors(moved)
    assert before.keys() == after.keys() and len(before) > 20  # graph tensors, edge sets, labels, properties
    for k in before:
        torch.testing.assert_close(after[k], before[k], rtol=0, atol=0, equal_nan=True, msg=k)  # dtype too
    assert moved.sources == b.sources and len(moved) == 2
    assert any(k.endswith("properties.gap") for k in after)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="page-locked memory needs a CUDA device")
def test_pinned_batch_copies_to_the_gpu():
    b = _batch().pin_memory()
    assert all(t.is_pinned() for t in _tensors(b).values())
    on = b.to("cuda")
    assert all(t.is_cuda for t in _tensors(on).values())
    for k, t in _tensors(_batch()).items():
        torch.testing.assert_close(_tensors(on)[k].cpu(), t, rtol=0, atol=0, equal_nan=True, msg=k)


def _slab_batch(fixed_atom_forces: bool, loss: str = "mae"):
    rng = np.random.default_rng(1)
    n = 6
    fixed = np.array([True, True, False, False, False, False])
    s = Sample(numbers=np.full(n, 29), positions=rng.uniform(0, 4, (n, 3)), energy=-3.0,
               forces=rng.normal(size=(n, 3)), fixed=fixed)
    task = Task(name="slab", graph=GraphConfig(cutoff=4.0, max_neighbors=8, pbc=False), head=0, energy=True,
                forces="direct", fixed_atom_forces=fixed_atom_forces, loss=loss, force_weight=10.0)
    return Collater([task], [1, 2])([(s, 0)]), task


def test_fixed_atom_forces_decides_which_atoms_count():
    b, _ = _slab_batch(False)
    assert b.free.tolist() == [False, False, True, True, True, True]  # JMP / OC20: fixed atoms left out
    b, _ = _slab_batch(True)
    assert b.free.all()


@pytest.mark.parametrize("loss", ["mae", "mse"])
def test_loss_is_the_documented_function_of_the_normalised_errors(loss):
    model = _model()
    for fixed_atom_forces in (False, True):
        b, task = _slab_batch(fixed_atom_forces, loss)
        module = JMPTrainModule(model, [task], OptimConfig())
        total, _ = module.compute(b, train=False)
        with torch.no_grad():
            out = model(b.g, pos=b.g.pos, cell=b.g.cell, direct_forces=True)
        e = module.units.energy(out["energy"][:, 0], torch.zeros(1, dtype=torch.long), b.g.batch, b.g.numbers)
        f = module.units.forces(out["forces"][:, :, 0], torch.zeros(1, dtype=torch.long), b.g.batch)
        e_n = (e.double() - b.energy).abs() / 2.0  # energy_std of the head
        f_n = torch.linalg.vector_norm(f.double() - b.forces, dim=1) / 0.5  # force_std
        keep = b.free
        if loss == "mse":
            e_n, f_n = e_n**2, f_n**2
        expect = e_n.sum() + 10.0 * f_n[keep].mean()
        torch.testing.assert_close(total.double(), expect, rtol=1e-5, atol=0)
    with pytest.raises(Exception, match="loss must be mae or mse"):
        from training.config import DatasetConfig

        DatasetConfig(name="x", loss="huber")


def test_stress_loss_is_the_mean_over_structures_with_a_stress_label():
    """A batch of one bulk cell (with stress) and one slab (without): the stress term counts as much as in a batch
    of the bulk cell alone, not half (the structure-wise mean over the batch would dilute it by the bulk share)."""
    from ase.build import bulk

    rng = np.random.default_rng(2)
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    cu.rattle(0.05, seed=3)
    cell_s = Sample(numbers=cu.numbers, positions=cu.positions, cell=np.array(cu.cell), pbc=True, energy=-10.0,
                    forces=np.zeros((4, 3)), stress=0.01 * np.eye(3))
    slab_s = Sample(numbers=np.full(3, 29), positions=rng.uniform(0, 3, (3, 3)), energy=-5.0,
                    forces=np.zeros((3, 3)))
    task = Task(name="s", graph=GraphConfig(cutoff=4.0, max_neighbors=8), head=0, energy=True,
                forces="conservative", stress=True, energy_weight=0.0, force_weight=0.0, stress_weight=1.0)
    model = _model()
    module = JMPTrainModule(model, [task], OptimConfig())
    col = Collater([task], [1, 2])
    alone, _ = module.compute(col([(cell_s, 0)]), train=False)
    mixed, _ = module.compute(col([(cell_s, 0), (slab_s, 0)]), train=False)
    assert float(alone) > 0
    torch.testing.assert_close(mixed, alone, rtol=1e-4, atol=0)  # float32 batching differences only; not 0.5x


def test_training_sets_its_recomputation_threshold_for_the_run_and_restores_it():
    """trainer.recompute_min_slots holds for the run in every process (Lightning's setup/teardown), so a
    conservative step keeps its activations (recomputing them costs it ~1.8x); the inference default is back after."""
    from jmp_calc.model import layers
    from training.config import TrainerConfig

    before = layers.set_recompute_min_slots(2**19)  # the inference default, whatever ran before
    task = Task(name="a", graph=GraphConfig(cutoff=4.0, max_neighbors=8), head=0)
    module = JMPTrainModule(_model(), [task], OptimConfig(),
                            recompute_min_slots=TrainerConfig().recompute_min_slots)
    module.setup("fit")
    try:
        assert layers.RECOMPUTE_MIN_SLOTS == 2**23
        module.setup("validate")  # a second stage inside the run keeps the run's value, restores the first
    finally:
        module.teardown("fit")
    assert layers.RECOMPUTE_MIN_SLOTS == 2**19
    untouched = JMPTrainModule(_model(), [task], OptimConfig())
    untouched.setup("fit")
    assert layers.RECOMPUTE_MIN_SLOTS == 2**19
    untouched.teardown("fit")
    layers.set_recompute_min_slots(before)


def _two_batches(forces: str):
    rng = np.random.default_rng(4)
    task = Task(name="m", graph=GraphConfig(cutoff=4.0, max_neighbors=8, pbc=False), head=0, energy=True,
                forces=forces, force_weight=10.0)
    col = Collater([task], [1, 2])
    out = []
    for n in (8, 8):
        s = Sample(numbers=np.full(n, 6), positions=rng.uniform(0, 3.5, (n, 3)), energy=-2.0,
                   forces=rng.normal(size=(n, 3)))
        out.append(col([(s, 0)]))
    return task, out


def _loss_and_grads(module, batch):
    module.model.zero_grad(set_to_none=True)
    loss, _ = module.compute(batch, train=True)
    loss.backward()
    return loss.detach(), {k: p.grad.clone() for k, p in module.model.named_parameters() if p.grad is not None}


def test_compiled_direct_training_step_equals_eager_and_conservative_steps_stay_eager():
    """trainer.compile: a direct-force step through torch.compile (here the aot_eager backend: the same tracing
    and autograd split as inductor, without its C++ compile) gives the eager step's loss and parameter gradients;
    a conservative step (double backward) runs eagerly."""
    task, batches = _two_batches("direct")
    eager = JMPTrainModule(_model(), [task], OptimConfig())
    compiled = JMPTrainModule(_model(), [task], OptimConfig(), compile="aot_eager")
    compiled.setup("fit")
    assert compiled._compiled is not None and not any("_compiled" in k for k in compiled.state_dict())
    assert not compiled._compiled.options.skip_module_guards  # Lightning toggles train/eval on these modules
    for b in batches:
        (le, ge), (lc, gc) = _loss_and_grads(eager, b), _loss_and_grads(compiled, b)
        torch.testing.assert_close(lc, le, rtol=1e-6, atol=0)
        assert ge.keys() == gc.keys() and len(ge) > 10
        for k in ge:
            torch.testing.assert_close(gc[k], ge[k], rtol=1e-4, atol=1e-7, msg=k)
    assert len(compiled.compile_times) == 1  # compiled once, at the first step
    task_c, batches_c = _two_batches("conservative")
    cons = JMPTrainModule(_model(), [task_c], OptimConfig(), compile="aot_eager")
    cons.setup("fit")
    ref = JMPTrainModule(_model(), [task_c], OptimConfig())
    (lc, gc), (le, ge) = _loss_and_grads(cons, batches_c[0]), _loss_and_grads(ref, batches_c[0])
    assert cons.compile_times == [] and torch.equal(lc, le)
    assert all(torch.equal(gc[k], ge[k]) for k in ge)
