"""Helpers for lock-order tests: know a session's backend pid, wait until it blocks on a lock."""

from __future__ import annotations

import time

from django.db import connection

from core.db import as_database_owner


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def wait_until_blocked(pid: int | None, timeout: float = 5.0) -> bool:
    """Poll (from this session) until backend ``pid`` waits on a heavyweight lock.

    Returns False after ``timeout`` seconds without seeing it wait (it may have
    finished, or never needed the lock): the caller then simply carries on.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid is not None:
            # Other sessions' wait events are visible to their own role and the owner.
            with as_database_owner(), connection.cursor() as cursor:
                cursor.execute(
                    "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", [pid]
                )
                row = cursor.fetchone()
            if row and row[0]:
                return True
        time.sleep(0.02)
    return False
