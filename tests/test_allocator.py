"""The glibc malloc settings a CPU Potential applies (jmp_calc.allocator): repeated calls stop page-faulting their
working set in again, and the user's own allocator choices win."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jmp_calc.allocator import _glibc

pytestmark = pytest.mark.skipif(_glibc() is None, reason="needs glibc")

PROBE = """
import resource, sys
import numpy as np
from jmp_calc.allocator import tune_malloc
applied = tune_malloc() if sys.argv[1] == "tune" else None
if sys.argv[1] == "potential":
    from jmp_calc import JMPCalculator
    JMPCalculator()
    from jmp_calc import allocator
    applied = allocator._applied
def churn():  # 400 blocks of 100 kB, all freed: glibc's default trims the heap top and faults them in again
    xs = [np.ones(25_000, np.float32) for _ in range(400)]
    del xs
churn()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    churn()
print(applied is not None, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


def probe(mode: str, **env) -> tuple[bool, int]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "JMP_CALC_TUNE_MALLOC"}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env={**base, **env}, capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], check=True).stdout.split()
    return out[0] == "True", int(out[1])


def test_tuned_process_keeps_its_heap_between_calls():
    applied, faults = probe("tune")
    assert applied and faults < 1000  # 0 measured
    default_applied, default_faults = probe("none")
    assert not default_applied and default_faults > 10_000  # ~48,000 measured: 5 x 40 MB faulted in again


def test_a_cpu_potential_tunes_and_user_settings_win():
    assert probe("potential")[0]
    for env in ({"JMP_CALC_TUNE_MALLOC": "0"}, {"MALLOC_ARENA_MAX": "2"},
                {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1000000"}):
        applied, faults = probe("tune", **env)
        assert not applied, env
