"""The pure arithmetic of the evaluation protocol: validation curves, the fine-tuning speed-up, paired statistics.

The speed-up is counted in optimiser steps (issue 12): scratch's best validation error and the step it was reached
at, against the first step at which the pre-trained run's running-best validation error is at least as good. A
pre-trained run that never gets there has no speed-up (``reached`` False), which reports say as "not reached".
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jmp_calc.errors import InputError


@dataclass(frozen=True)
class Curve:
    """One validation metric against the optimiser step it was measured after."""

    steps: tuple[int, ...]
    values: tuple[float, ...]

    def running_best(self) -> np.ndarray:
        return np.minimum.accumulate(np.asarray(self.values, dtype=float))


@dataclass(frozen=True)
class SpeedUp:
    scratch_best: float
    scratch_best_step: int
    pre_reach_step: int | None  #: first step at which the pre-trained running best <= scratch_best (None: never)

    @property
    def reached(self) -> bool:
        return self.pre_reach_step is not None

    @property
    def factor(self) -> float | None:
        return None if self.pre_reach_step is None else self.scratch_best_step / self.pre_reach_step

    def describe(self) -> str:
        return "not reached" if self.factor is None else f"{self.factor:.1f}x"


@dataclass(frozen=True)
class MeanSD:
    mean: float
    sd: float | None  #: sample standard deviation (ddof 1); None for a single value
    n: int

    def describe(self, fmt: str = ".1f") -> str:
        return f"{self.mean:{fmt}}" + ("" if self.sd is None else f" ± {self.sd:{fmt}}")


@dataclass(frozen=True)
class Paired:
    """Per-seed pairs (pre-trained, scratch) of one test MAE."""

    pretrained: MeanSD
    scratch: MeanSD
    difference: MeanSD  #: pre-trained - scratch, per seed
    gain_pct: MeanSD  #: 100 (1 - pre-trained / scratch), per seed


def curve_from_rows(rows: list[dict], metric: str) -> Curve:
    """The ``val/<head>/<metric>`` column of metrics.csv rows (epochs without a validation are skipped)."""
    if not rows:
        raise InputError("metrics.csv has no rows")
    key = next((k for k in rows[0] if k.startswith("val/") and k.endswith("/" + metric)), None)
    if key is None:
        raise InputError(f"metrics.csv has no val/*/{metric} column (columns: {', '.join(rows[0])})")
    steps, values = [], []
    for r in rows:
        if r.get(key) not in (None, ""):
            steps.append(int(float(r["step"])))
            values.append(float(r[key]))
    if not values:
        raise InputError(f"metrics.csv: no validation value of {key}")
    return Curve(tuple(steps), tuple(values))


def read_curve(path: Path, metric: str) -> Curve:
    with open(path, newline="") as fh:
        return curve_from_rows(list(csv.DictReader(fh)), metric)


def speedup(pretrained: Curve, scratch: Curve) -> SpeedUp:
    best = int(np.argmin(scratch.values))
    target = scratch.values[best]
    reach = np.nonzero(pretrained.running_best() <= target)[0]
    return SpeedUp(scratch_best=float(target), scratch_best_step=int(scratch.steps[best]),
                   pre_reach_step=int(pretrained.steps[reach[0]]) if reach.size else None)


def mean_sd(values) -> MeanSD:
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        raise InputError("mean_sd of no values")
    return MeanSD(float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else None, int(v.size))


def paired(pretrained, scratch) -> Paired:
    p = np.asarray(list(pretrained), dtype=float)
    s = np.asarray(list(scratch), dtype=float)
    if p.shape != s.shape or p.size == 0:
        raise InputError(f"paired statistics need equally many values per mode (got {p.size} and {s.size})")
    if np.any(s <= 0) or not np.all(np.isfinite(np.concatenate([p, s]))):
        raise InputError("paired statistics need finite values and positive scratch errors")
    return Paired(mean_sd(p), mean_sd(s), mean_sd(p - s), mean_sd(100.0 * (1.0 - p / s)))


def geometric_mean(values) -> float:
    v = [float(x) for x in values]
    return math.exp(sum(math.log(x) for x in v) / len(v)) if v else float("nan")
