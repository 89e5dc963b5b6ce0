"""Train / validation / test sets of one dataset: the one place a run reads, cleans and splits its data.

Every split is a pure function of the dataset's settings and the run's seed:

* ``val`` (and ``test``) files given: used as they are;
* otherwise a seeded permutation of the training file gives ``train_size`` training structures (default: all but
  the validation ones), then ``val_size`` validation structures (default ``val_fraction`` of the file, at least 1),
  and the rest is the test set (when no test file is given);
* ``kfold: K``: the file is first cut into K folds (scikit-learn's seeded ``KFold``, MatBench's protocol); fold
  ``fold`` is the test set and train / val are drawn from the other folds as above;
* ``max_train`` / ``max_val``: seeded subsets, drawn last.

Frames with ``|F| > max_abs_force`` on any atom are dropped from every split before anything is drawn (the count is
logged), so the statistics that normalise the loss are fitted on physical frames only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import ConfigError, DatasetConfig
from .data.base import Samples
from .data.stats import split_indices

__all__ = ["Splits", "train_val_rest", "kfold_indices", "subset", "load_splits", "read_labelled"]


@dataclass
class Splits:
    train: Samples
    val: Samples
    test: Samples | None = None


def train_val_rest(n: int, *, n_val: int, n_train: int | None = None, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted (train, val, rest) indices of ``n`` items (:func:`training.data.stats.split_indices`, the one seeded
    partition): ``n_train`` (default ``n - n_val``) for training, then ``n_val`` for validation, the rest left over."""
    n_train = n - n_val if n_train is None else n_train
    if n_val < 1 or n_train < 1 or n_train + n_val > n:
        raise ConfigError(f"cannot split {n} structures into {n_train} train + {n_val} validation")
    parts = split_indices(n, {"train": n_train, "val": n_val, "rest": None}, seed=seed)
    return np.sort(parts["train"]), np.sort(parts["val"]), np.sort(parts["rest"])


def kfold_indices(n: int, k: int, fold: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rest, test) indices of fold ``fold`` of a shuffled ``k``-fold split (scikit-learn ``KFold``)."""
    from sklearn.model_selection import KFold

    if not 0 <= fold < k:
        raise ConfigError(f"fold must be in 0..{k - 1}, got {fold}")
    rest, test = list(KFold(k, shuffle=True, random_state=seed).split(np.arange(n)))[fold]
    return np.sort(rest), np.sort(test)


def subset(samples, n: int | None, seed: int):
    """A seeded subset of at most ``n`` samples (in their original order); all of them when ``n`` is None."""
    if n is None or n >= len(samples):
        return samples
    idx = np.sort(np.random.default_rng(seed).choice(len(samples), size=n, replace=False))
    return samples.subset(idx) if hasattr(samples, "subset") else Samples([samples[int(i)] for i in idx])


def read_labelled(path: str, format: str | None, need: tuple[str, ...], **reader):
    """``read_dataset``; for ASE files (parsed whole anyway) every frame must carry the labels ``need`` the run
    trains on, checked at load time. Records of lazy formats are checked when batched (see ``Collater``)."""
    from .data import _guess, read_dataset

    fmt = format or _guess(Path(path))
    if fmt == "ase" and need and "require" not in reader and not str(path).endswith(".db"):
        reader = {**reader, "require": tuple(need)}
    return read_dataset(path, format=fmt, **reader)


def load_splits(d: DatasetConfig, seed: int, *, log=print) -> Splits:
    """Read, clean and split one dataset (see the module docstring)."""
    if not d.train:
        raise ConfigError(f"datasets[{d.name}].train is not set")
    need = (("energy",) if d.energy else ()) + (("forces",) if d.forces != "none" else ())
    data = read_labelled(d.train, d.format, need, **d.reader)
    val = read_labelled(d.val, d.format, need, **(d.reader if d.val_reader is None else d.val_reader)) \
        if d.val else None
    test = read_labelled(d.test, d.format, (), **d.reader) if d.test else None
    if d.max_abs_force is not None:
        from .data.base import drop_large_forces

        cleaned = []
        for label, part in (("train", data), ("val", val)):
            if part is None:
                cleaned.append(None)
                continue
            kept, dropped = drop_large_forces(part, float(d.max_abs_force))
            log(f"dataset {d.name} {label}: dropped {len(dropped)} of {len(part)} frames with |F| > "
                f"{d.max_abs_force:g} eV/A" + (f" (e.g. {', '.join(dropped[:3])})" if dropped else ""))
            cleaned.append(kept)
        data, val = cleaned
    train = data
    if d.kfold:
        rest, test_idx = kfold_indices(len(data), d.kfold, d.fold, d.kfold_seed)
        if test is None:
            test = data.subset(test_idx)
        train = data.subset(rest)
    if val is None:
        n_val = d.val_size if d.val_size is not None else max(1, int(round(len(train) * d.val_fraction)))
        tr, va, rest = train_val_rest(len(train), n_val=n_val, n_train=d.train_size, seed=seed)
        if test is None and len(rest):
            test = train.subset(rest)
        train, val = train.subset(tr), train.subset(va)
    elif d.train_size is not None:
        train = subset(train, d.train_size, seed)
    return Splits(subset(train, d.max_train, seed), subset(val, d.max_val, seed + 1), test)
