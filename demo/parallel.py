"""Worker threads for the demo's bulk work, each with its own database connection."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connection


def in_threads(jobs: Sequence[Any], func: Callable[[Any], Any], workers: int) -> list[Any]:
    """``func(job)`` for every job, in ``workers`` threads (inline for one); the results in
    the order the jobs finished. The first error stops the others and is raised here."""
    if workers <= 1:
        return [func(job) for job in jobs]
    lock = threading.Lock()
    pending = list(reversed(jobs))
    results: list[Any] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            while True:
                with lock:
                    if not pending or errors:
                        return
                    job = pending.pop()
                done = func(job)
                with lock:
                    results.append(done)
        except BaseException as exc:  # raised again in the calling thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
