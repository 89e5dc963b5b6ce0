"""The pure parts of the evaluation protocol (experiments/mini_jmp/protocol_stats.py): curves from metrics.csv,
the speed-up in steps, paired statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments.mini_jmp.protocol import epochs_for
from experiments.mini_jmp.protocol_stats import Curve, curve_from_rows, mean_sd, paired, read_curve, speedup
from jmp_calc.errors import InputError

HEADER = "epoch,step,wall_s,lr,train/loss,val/ethanol/energy_per_atom,val/ethanol/forces,val/loss"


def _csv(tmp_path, rows):
    p = tmp_path / "metrics.csv"
    p.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    return p


def test_curve_reads_steps_and_the_metric_column(tmp_path):
    p = _csv(tmp_path, ["0,7,1.0,0.001,9,0.02,0.50,3", "1,14,2.0,0.002,8,,,", "2,21,3.0,0.003,7,0.01,0.30,2"])
    c = read_curve(p, "forces")
    assert c == Curve((7, 21), (0.5, 0.3))  # the epoch without a validation value is skipped
    assert read_curve(p, "energy_per_atom").values == (0.02, 0.01)
    with pytest.raises(InputError, match="val/\\*/gap"):
        read_curve(p, "gap")


def test_curve_of_no_rows_is_an_error():
    with pytest.raises(InputError, match="no rows"):
        curve_from_rows([], "forces")


def test_speedup_counts_steps_to_scratchs_best():
    scratch = Curve((10, 20, 30, 40, 50), (5.0, 4.0, 3.0, 2.5, 2.6))  # best 2.5 at step 40
    pre = Curve((10, 20, 30, 40, 50), (3.0, 2.4, 2.8, 2.0, 1.9))  # running best <= 2.5 first at step 20
    sp = speedup(pre, scratch)
    assert (sp.scratch_best, sp.scratch_best_step, sp.pre_reach_step) == (2.5, 40, 20)
    assert sp.factor == pytest.approx(2.0) and sp.describe() == "2.0x"


def test_speedup_uses_the_running_best_and_ties_count():
    scratch = Curve((5, 10), (2.0, 1.0))
    pre = Curve((5, 10, 15), (1.0, 3.0, 0.5))  # reaches scratch's best (1.0, a tie) at once
    assert speedup(pre, scratch).pre_reach_step == 5
    assert speedup(pre, scratch).factor == pytest.approx(2.0)


def test_speedup_not_reached_is_reported_as_such():
    sp = speedup(Curve((10, 20), (3.0, 2.0)), Curve((10, 20), (2.5, 1.5)))
    assert not sp.reached and sp.factor is None and sp.describe() == "not reached"


def test_paired_statistics_per_seed():
    pre, scr = [1.0, 2.0, 3.0], [2.0, 4.0, 4.0]
    p = paired(pre, scr)
    assert p.difference.mean == pytest.approx(-4.0 / 3.0)
    assert p.difference.sd == pytest.approx(np.std([-1.0, -2.0, -1.0], ddof=1))
    gains = [50.0, 50.0, 25.0]
    assert p.gain_pct.mean == pytest.approx(np.mean(gains)) and p.gain_pct.sd == pytest.approx(np.std(gains, ddof=1))
    assert (p.pretrained.mean, p.scratch.mean, p.scratch.n) == (2.0, pytest.approx(10 / 3), 3)
    assert p.gain_pct.describe() == "41.7 ± 14.4"


def test_single_seed_has_no_sd_and_bad_pairs_are_errors():
    one = mean_sd([4.0])
    assert one.sd is None and one.describe() == "4.0"
    with pytest.raises(InputError, match="equally many"):
        paired([1.0, 2.0], [1.0])
    with pytest.raises(InputError, match="positive scratch"):
        paired([1.0], [0.0])


def test_equal_step_budget_in_epochs():
    assert epochs_for(50, 1000) == 143 and epochs_for(200, 1000) == 40  # 7 and 25 steps per epoch (batch 8)
    assert epochs_for(10, 1) == 1
    assert math.ceil(200 / 8) * epochs_for(200, 1000) == 1000


def test_plan_runs_only_the_modes_asked_for(tmp_path):
    """--modes scratch mace plans the baselines alone (they do not depend on the backbone); the default plans all
    three, on the same seeded training subset."""
    from experiments.mini_jmp.protocol import MODES, Settings, plan

    s = Settings(base="unused", out=tmp_path, tasks=("pbe-ethanol",), sizes=(5,), seeds=(0,), steps=10)
    every = plan(s)
    assert [j.mode for j in every] == list(MODES)
    base = plan(Settings(**{**s.__dict__, "modes": ("scratch", "mace")}))
    assert [j.mode for j in base] == ["scratch", "mace"]
    assert {j.train for j in base} == {every[0].train} and every[0].epochs == 10  # 1 step per epoch at N=5
    assert [j.mode for j in plan(Settings(**{**s.__dict__, "modes": ("scratch",)}))] == ["scratch"]


def test_training_subsets_cover_every_element_of_the_split():
    from ase import Atoms

    from experiments.mini_jmp.protocol import _cover_elements

    frames = [Atoms("CH4")] * 40 + [Atoms("CH3F"), Atoms("NH3"), Atoms("CH3F")]  # F and N in 3 of 43 frames
    rng = np.random.default_rng(0)
    pick = np.arange(5)  # a draw of methane only
    out = _cover_elements(frames, pick, np.random.default_rng(1))
    assert len(out) == 5 and len(set(out.tolist())) == 5
    assert {int(z) for i in out for z in frames[i].numbers} == {1, 6, 7, 9}
    assert set(out[:3].tolist()) == {0, 1, 2}  # only the last slots are given away
    same = rng.choice(40, size=5, replace=False)  # nothing missing (one molecule's MD): unchanged
    assert np.array_equal(_cover_elements(frames[:40], same, rng), same)
