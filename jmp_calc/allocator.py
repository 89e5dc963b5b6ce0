"""glibc malloc settings for many small-system calls on CPU.

A CPU call of a small structure (a 32-atom cell, a molecule) allocates and frees a few hundred tensors of 0.1-3 MB.
glibc's defaults serve each of those above its (dynamic) mmap threshold with a fresh ``mmap`` and give the top of
the heap back to the kernel at ``free`` once more than twice that threshold is free, so every call page-faults and
zero-fills its working set again: 300-6,000 minor faults per call of the embedded model on 32-atom Cu, ~10 % of
its time on this project's development machine (a virtual machine, where faults are dear; 1.11x thread-CPU with the
settings below, ``benchmarks/small.py --malloc-ab 3``).

:func:`tune_malloc` (called when a :class:`~jmp_calc.potential.Potential` is created on CPU) keeps that memory in
the process instead: blocks below 32 MB (glibc's own upper bound for its dynamic threshold) come from the heap,
which grows in 64 MB steps and is trimmed only when 256 MB lie free at its top. The peak memory of a call is
unchanged; what a process holds between calls is up to ~256 MB more.

It changes process-wide allocator settings, so it stays out of the way: nothing happens where the C library is not
glibc or is replaced (``LD_PRELOAD`` of jemalloc, tcmalloc, mimalloc), where the user set any ``MALLOC_*`` variable
or ``GLIBC_TUNABLES`` malloc tunable (their choice wins), or with ``JMP_CALC_TUNE_MALLOC=0``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from dataclasses import dataclass

log = logging.getLogger(__name__)

# mallopt parameter numbers, glibc <malloc.h>
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

ENV = "JMP_CALC_TUNE_MALLOC"


@dataclass(frozen=True)
class MallocSettings:
    """What :func:`tune_malloc` sets (bytes)."""

    mmap_threshold: int = 32 << 20
    trim_threshold: int = 256 << 20
    top_pad: int = 64 << 20


_applied: MallocSettings | None = None
_decided = False


def _glibc():
    """The process's C library if it is glibc, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (glibc only: musl lacks it)
        return libc
    except (OSError, AttributeError):
        return None


def reason_not_to_tune() -> str | None:
    """Why :func:`tune_malloc` leaves the allocator alone in this process, or None."""
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return f"{ENV}={os.environ[ENV]}"
    user = sorted(k for k in os.environ if k.startswith("MALLOC_"))
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        user.append("GLIBC_TUNABLES")
    if user:
        return f"the environment sets {', '.join(user)}"
    if any(name in os.environ.get("LD_PRELOAD", "") for name in ("jemalloc", "tcmalloc", "mimalloc")):
        return "LD_PRELOAD replaces malloc"
    if _glibc() is None:
        return "the C library is not glibc"
    return None


def tune_malloc(settings: MallocSettings = MallocSettings()) -> MallocSettings | None:
    """Apply ``settings`` with glibc's ``mallopt``, once per process; returns what was applied (None: left alone,
    see :func:`reason_not_to_tune`)."""
    global _applied, _decided
    if _decided:
        return _applied
    _decided = True
    why = reason_not_to_tune()
    if why is not None:
        log.debug("malloc settings left alone: %s", why)
        return None
    libc = _glibc()
    ok = all(libc.mallopt(param, value) == 1 for param, value in (
        (M_MMAP_THRESHOLD, settings.mmap_threshold), (M_TRIM_THRESHOLD, settings.trim_threshold),
        (M_TOP_PAD, settings.top_pad)))
    _applied = settings if ok else None
    log.debug("malloc settings %s: %s", "applied" if ok else "refused by mallopt", settings)
    return _applied
