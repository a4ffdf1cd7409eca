"""Helpers for the few bulk operations that build hundreds of thousands of objects at once.

``gc_paused()``: the cyclic garbage collector is paused for the block. Reference counting
still frees almost everything; what the collector saves is the repeated traversal of a
heap that such an operation grows by millions of objects (a 200,000-line registry import
spent about a quarter of its Python time in collections). The collector is enabled again
when the outermost block ends (a collection then runs as usual on the next allocations).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block (nested and threads: the
    outermost block of all restores it)."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
