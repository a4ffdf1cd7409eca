"""Work that must commit with a posting, run inside the posting service's own transaction.

A money POST keeps its response with its posting (``access.idempotency``): both commit, or
neither. Opening a transaction around the service for that nests the service's own
transaction in it: a savepoint and its release on every request (two statements, and the
separate round trip of the transaction's BEGIN), for what is one posting and one INSERT.
Instead the caller hands the work over::

    with handed_over(record_the_response) as handover:
        result = some_posting_service(...)
    handover.ran  # True: the work ran in the transaction that wrote ``result``

and a service that supports it (every ledger posting service: its single-posting path,
``ledger.services.idempotency.idempotent``) calls ``run_handed_over(result)`` in its
transaction right after writing the posting, before committing. The work runs at most once
per block; an exception it raises rolls the posting back with it. A result replayed for a
seen idempotency key, or a refusal, runs nothing.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Handover:
    work: Callable[[Any], None]
    ran: bool = False


_state = threading.local()


@contextlib.contextmanager
def handed_over(work: Callable[[Any], None]) -> Iterator[Handover]:
    """Inside the block, the first posting written calls ``work(result)`` in its transaction."""
    outer = getattr(_state, "handover", None)
    handover = Handover(work)
    _state.handover = handover
    try:
        yield handover
    finally:
        _state.handover = outer


def run_handed_over(result: Any) -> None:
    """Called by a posting service inside its transaction, right after writing ``result``."""
    handover = getattr(_state, "handover", None)
    if handover is None or handover.ran:
        return
    handover.work(result)
    handover.ran = True
