"""From samples of several datasets to model batches: graph building in DataLoader workers, and JMP's temperature
sampling across datasets (deterministic per seed and epoch, shardable over DDP ranks, resumable mid-epoch).

Edge dropout happens here, where the graphs are built: a training :class:`TemperatureSampler` (``keys=True``) gives
every draw a key ``(epoch, rank, position in the epoch)``, and the training :class:`Collater` drops a2a edges with
a generator seeded from ``(run seed, key)``. The dropped edges are thus a pure function of the run's seed and the
draw, whatever the number of DataLoader workers and across resumes; validation loaders pass plain indices and a
collater without dropout."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from jmp_calc.graph.batch import GraphBatch, collate
from jmp_calc.graph.structures import Structure, build_graphs

from .data.base import DataError
from .task import Task

__all__ = ["MultiTaskDataset", "TrainBatch", "Collater", "TemperatureSampler", "temperature_weights"]


class MultiTaskDataset(Dataset):
    """The concatenation of several datasets; item ``i`` is ``(sample, task index)``, item ``(i, key)`` (from a
    keyed sampler) is ``(sample, task index, key)``."""

    def __init__(self, datasets: list):
        self.datasets = list(datasets)
        self.sizes = np.array([len(d) for d in self.datasets], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, i):
        if isinstance(i, tuple):
            i, key = i
            return (*self[i], key)
        task = int(np.searchsorted(self.starts, i, side="right") - 1)
        return self.datasets[task][int(i - self.starts[task])], task


@dataclass
class TrainBatch:
    """A graph batch with labels. Masks say which structures/atoms carry each label (datasets differ)."""

    g: GraphBatch
    task: torch.Tensor  # (B,) dataset index per structure
    energy: torch.Tensor  # (B,) eV, NaN where absent
    forces: torch.Tensor  # (N, 3) eV/A, NaN where absent
    free: torch.Tensor  # (N,) bool: atoms whose forces count (not fixed, unless the task trains those too)
    stress: torch.Tensor  # (B, 3, 3) eV/A^3, NaN where absent
    properties: dict[str, torch.Tensor]  # name -> (B,), NaN where absent
    sources: list[str]

    def to(self, device) -> TrainBatch:
        """On ``device``; copies from pinned memory (:meth:`pin_memory`) are asynchronous (``non_blocking``)."""
        return _map_tensors(self, lambda t: t.to(device, non_blocking=True))

    def pin_memory(self) -> TrainBatch:
        """Every tensor in page-locked memory, so the copy to a GPU can overlap compute; the DataLoader calls this
        (in its pin-memory thread, off the training step) when it is made with ``pin_memory=True``."""
        return _map_tensors(self, lambda t: t.pin_memory())

    def __len__(self) -> int:
        return int(self.task.shape[0])


def _map_tensors(obj, fn):
    """``obj`` with ``fn`` applied to every tensor in it: fields of (nested) dataclasses, values of dicts."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {}
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if f.init and (isinstance(v, (torch.Tensor, dict)) or dataclasses.is_dataclass(v)):
                changes[f.name] = _map_tensors(v, fn)
        return dataclasses.replace(obj, **changes)
    return obj


DROPOUT_SALT = 0x3D6E  # keeps the edge-dropout streams apart from the sampler's (seeded from [seed, epoch])


class Collater:
    """``collate_fn``: builds each sample's four graphs with its dataset's rules and batches them (picklable).

    ``edge_dropout`` > 0 (the training loader's collater only; take it from the model's config): each a2a edge of a
    keyed item ``(sample, task, key)`` is dropped with that probability, drawn from a generator seeded with
    ``(seed, key)``. Items without a key are never dropped (validation, scale-factor fitting)."""

    def __init__(self, tasks: list[Task], qint_tags, property_names: list[str] = (), *,
                 edge_dropout: float | None = 0.0, seed: int = 0):
        self.tasks = list(tasks)
        self.qint_tags = list(qint_tags)
        self.property_names = list(property_names)
        self.edge_dropout = float(edge_dropout or 0.0)
        if not 0.0 <= self.edge_dropout < 1.0:
            raise ValueError(f"edge_dropout must be in [0, 1), got {edge_dropout}")
        self.seed = int(seed)

    def _rng(self, key) -> np.random.Generator | None:
        if not self.edge_dropout or key is None:
            return None
        return np.random.default_rng([DROPOUT_SALT, self.seed, *(int(k) for k in key)])

    def __call__(self, items: list[tuple]) -> TrainBatch:
        structs, graphs = [], []
        keys = [it[2] if len(it) > 2 else None for it in items]
        items = [(it[0], it[1]) for it in items]
        for (s, t), key in zip(items, keys):
            spec = self.tasks[t]
            for label, wanted in (("energy", spec.energy), ("forces", spec.has_forces)):
                if wanted and getattr(s, label) is None:  # would pass as "absent" and silently not be trained on
                    raise DataError(f"{s.source or 'sample'}: no {label}, but dataset {spec.name or t} trains on "
                                    f"{label}")
            st = Structure(s.numbers, s.positions, s.cell, s.pbc,
                           s.tags if s.tags is not None else np.zeros(len(s), np.int64))
            try:
                rng = self._rng(key)
                graphs.append(build_graphs(st, spec.graph, self.qint_tags, spec.set_tags_to,
                                           edge_dropout=self.edge_dropout if rng is not None else 0.0, rng=rng))
            except Exception as exc:  # noqa: BLE001 - name the record, keep the cause
                raise DataError(f"{s.source or 'sample'}: cannot build its graph ({exc})") from exc
            structs.append(st)
        g = collate(graphs, [s.positions for s in structs], [s.numbers for s in structs], [s.cell for s in structs])
        nan = float("nan")
        samples = [s for s, _ in items]
        energy = torch.tensor([s.energy if (s.energy is not None and self.tasks[t].energy) else nan
                               for s, t in items], dtype=torch.float64)
        forces = torch.cat([torch.as_tensor(s.forces) if (s.forces is not None and self.tasks[t].has_forces)
                            else torch.full((len(s), 3), nan, dtype=torch.float64) for s, t in items])
        free = torch.cat([torch.as_tensor(~s.fixed) if (s.fixed is not None and not self.tasks[t].fixed_atom_forces)
                          else torch.ones(len(s), dtype=torch.bool) for s, t in items])
        stress = torch.stack([torch.as_tensor(s.stress) if (s.stress is not None and self.tasks[t].stress)
                              else torch.full((3, 3), nan, dtype=torch.float64) for s, t in items])
        props = {p: torch.tensor([float(s.properties.get(p, nan)) if p in self.tasks[t].properties else nan
                                  for s, t in items], dtype=torch.float64) for p in self.property_names}
        return TrainBatch(g=g, task=torch.tensor([t for _, t in items], dtype=torch.long), energy=energy,
                          forces=forces, free=free, stress=stress, properties=props,
                          sources=[s.source for s in samples])


def temperature_weights(sizes, temperature: float, multipliers=None) -> np.ndarray:
    """JMP's temperature sampling: dataset ``i`` is drawn with probability proportional to ``n_i ** (1 / T)``
    (T = 1: proportional to size; T -> inf: uniform over datasets; JMP used T = 2), times ``multipliers[i]``
    (``DatasetConfig.sample_weight``; default 1) when given."""
    sizes = np.asarray(sizes, dtype=np.float64)
    if temperature <= 0:
        raise ValueError(f"sampling temperature must be positive, got {temperature}")
    w = np.where(sizes > 0, sizes ** (1.0 / temperature), 0.0)
    if multipliers is not None:
        w = w * np.asarray(multipliers, dtype=np.float64)
    return w / w.sum()


class TemperatureSampler(Sampler[int]):
    """Indices into a :class:`MultiTaskDataset`, drawn with temperature sampling; the order is a pure function of
    ``(seed, epoch)``. Each dataset is walked through a fresh permutation (cycling when over-sampled).

    ``num_replicas``/``rank`` shard the epoch for DDP (every rank gets the same number of indices), and
    :meth:`skip` makes the next epoch start after the batches a resumed run has already trained on. With
    ``keys=True`` it yields ``(index, (epoch, rank, position))``: the key that seeds the draw's edge dropout
    (positions count from the epoch's start, skipped draws included, so a resumed run gets the same keys).
    """

    def __init__(self, sizes, *, temperature: float = 2.0, samples_per_epoch: int | None = None, seed: int = 0,
                 shuffle: bool = True, num_replicas: int = 1, rank: int = 0, keys: bool = False,
                 multipliers=None):
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.weights = temperature_weights(self.sizes, temperature, multipliers)
        self.total = int(samples_per_epoch or self.sizes.sum())
        self.seed, self.shuffle = int(seed), shuffle
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.epoch = 0
        self.keys = bool(keys)
        self._skip: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def skip(self, n_samples: int, epoch: int) -> None:
        """Leave out the first ``n_samples`` (per rank) of ``epoch`` (used when resuming mid-epoch)."""
        self._skip = (int(epoch), int(n_samples))

    def epoch_indices(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        starts = np.concatenate([[0], np.cumsum(self.sizes)])
        if not self.shuffle:
            return np.arange(self.total) % max(1, int(self.sizes.sum()))
        choice = rng.choice(len(self.sizes), size=self.total, p=self.weights)
        out = np.empty(self.total, dtype=np.int64)
        for d, n in enumerate(self.sizes):
            slots = np.flatnonzero(choice == d)
            if not len(slots):
                continue
            reps = math.ceil(len(slots) / n)
            perm = np.concatenate([rng.permutation(n) for _ in range(reps)])[: len(slots)]
            out[slots] = starts[d] + perm
        return out

    def __len__(self) -> int:
        return math.ceil(self.total / self.num_replicas)

    def __iter__(self):
        idx = self.epoch_indices(self.epoch)
        per_rank = len(self)
        idx = np.resize(idx, per_rank * self.num_replicas)  # pad by wrapping so ranks are equal
        mine = idx[self.rank::self.num_replicas]
        skip = 0
        if self._skip is not None and self._skip[0] == self.epoch:
            skip, self._skip = self._skip[1], None
        if not self.keys:
            return iter(mine[skip:].tolist())
        return iter([(int(i), (self.epoch, self.rank, skip + j)) for j, i in enumerate(mine[skip:])])
