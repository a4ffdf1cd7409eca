"""Run callables in real parallel database transactions (threads, one connection each).

Every worker waits on a shared ``threading.Barrier`` so that they all start
together, runs its call in autocommit mode (each service opens its own
database transaction), records the result or the exception, and closes its
database connection. The database work happens in PostgreSQL, so threads give
real parallelism there; ``run_in_processes`` forks real processes for the
same kind of run.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.db import connection, connections

from core.errors import DomainError

BARRIER_TIMEOUT = 30
RESULT_TIMEOUT = 120


@dataclass(frozen=True)
class Outcome:
    """What one worker got: a return value or an exception."""

    index: int
    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def code(self) -> str | None:
        """The domain error code, or None for a success; anything else is re-raised."""
        if self.error is None:
            return None
        if isinstance(self.error, DomainError):
            return self.error.code
        raise AssertionError(f"worker {self.index} failed unexpectedly: {self.error!r}")


def run_in_threads(calls: Sequence[Callable[[], Any]]) -> list[Outcome]:
    """Start every call at the same moment in its own thread; return outcomes in call order.

    Only domain errors are expected outcomes; the caller asserts on them. Any
    other exception (a deadlock, an integrity error) is kept as the outcome,
    and ``Outcome.code`` turns it into a test failure.
    """
    barrier = threading.Barrier(len(calls), timeout=BARRIER_TIMEOUT)

    def work(index: int, call: Callable[[], Any]) -> Outcome:
        try:
            barrier.wait()
            try:
                return Outcome(index, value=call())
            except BaseException as exc:  # reported to the test
                return Outcome(index, error=exc)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(work, i, call) for i, call in enumerate(calls)]
        return [future.result(timeout=RESULT_TIMEOUT) for future in futures]


def run_parallel(call: Callable[[int], Any], workers: int) -> list[Outcome]:
    """``workers`` threads each running ``call(worker_index)`` at the same moment."""
    return run_in_threads([lambda i=i: call(i) for i in range(workers)])


# --------------------------------------------------------------------------- processes

_process_barrier: Any = None


def _init_process(barrier: Any) -> None:
    global _process_barrier
    _process_barrier = barrier
    # The parent closed its connections before forking; make sure this child
    # never reuses a socket it inherited, it opens its own on first use.
    for conn in connections.all(initialized_only=True):
        conn.connection = None


def _run_in_process(call: Callable[[int], Any], index: int) -> tuple[str, Any]:
    try:
        _process_barrier.wait(BARRIER_TIMEOUT)
        try:
            return "ok", call(index)
        except DomainError as exc:
            return "domain_error", exc.code
        except Exception as exc:  # reported to the test
            return "error", repr(exc)
    finally:
        connection.close()


def run_in_processes(call: Callable[[int], Any], workers: int) -> list[tuple[str, Any]]:
    """``workers`` forked processes each running ``call(worker_index)`` at the same moment.

    ``call`` must be a module-level function returning something picklable.
    Results are ``("ok", value)``, ``("domain_error", code)`` or ``("error", repr)``.
    """
    connections.close_all()
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(workers)
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_init_process, initargs=(barrier,)
    ) as pool:
        futures = [pool.submit(_run_in_process, call, i) for i in range(workers)]
        return [future.result(timeout=RESULT_TIMEOUT) for future in futures]


def codes(outcomes: Sequence[Outcome]) -> Counter[str | None]:
    """How many workers succeeded (key None) and how many got each domain error code."""
    return Counter(outcome.code for outcome in outcomes)
