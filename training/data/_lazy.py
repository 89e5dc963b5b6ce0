"""Per-process file handles for lazy readers.

HDF5, LMDB and SQLite handles must not cross a ``fork`` and cannot be pickled (``spawn``). A lazy reader's getter
therefore stores only the path and opens the file on first access in each process; :class:`PerProcess` does that
bookkeeping and drops the handle when pickled.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


class PerProcess:
    """``handle()`` returns ``opener(path)``, opened once per process. Picklable when ``opener`` is a module-level
    function."""

    def __init__(self, opener: Callable[[str], Any], path: str):
        self.opener, self.path = opener, str(path)
        self._handle, self._pid = None, None

    def handle(self) -> Any:
        if self._handle is None or self._pid != os.getpid():
            # After a fork the inherited handle belongs to the parent: open our own and leave the parent's alone.
            self._handle, self._pid = self.opener(self.path), os.getpid()
        return self._handle

    def __getstate__(self):
        return {"opener": self.opener, "path": self.path, "_handle": None, "_pid": None}
