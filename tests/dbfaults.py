"""Cutting a database connection for real: the backend is terminated by the owner."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from django.conf import settings
from django.db import connection

from core import hot_cursor as core_hot_cursor


def owner_connect(**extra) -> psycopg.Connection:
    """A psycopg connection to the test database with the owner's login."""
    owner = settings.BILLING_DATABASE_OWNER
    params = {
        "host": owner.get("HOST") or None,
        "port": owner.get("PORT") or None,
        "user": owner.get("USER") or None,
        "password": owner.get("PASSWORD") or None,
        "dbname": connection.settings_dict["NAME"],
        "autocommit": True,
        **extra,
    }
    return psycopg.connect(**{k: v for k, v in params.items() if v is not None})


def terminate_backend(pid: int) -> None:
    with owner_connect() as owner:
        terminated = owner.execute("SELECT pg_terminate_backend(%s, 5000)", [pid]).fetchone()
    assert terminated == (True,)


@contextmanager
def cut_connection_before(
    matches: Callable[[str], bool], times: int = 1, *, hot_cursor: bool = False
) -> Iterator[list]:
    """Terminate this thread's database backend just before the first ``times`` statements
    that ``matches`` selects; yields the list of statements it cut before.

    Statements sent through Django's cursors, and with ``hot_cursor`` also those of the
    prepared-statement cursor (``core.hot_cursor``: the ledger's postings, the API's
    account-in-scope reads), which Django's execute wrappers do not see."""
    cut: list[str] = []

    def wrapper(execute, sql, params, many, context):
        text = sql if isinstance(sql, str) else str(sql)
        if len(cut) < times and matches(text):
            cut.append(text)
            terminate_backend(context["connection"].connection.info.backend_pid)
        return execute(sql, params, many, context)

    reused = core_hot_cursor._ReusedCursor
    original = reused.execute

    def hot_execute(self, sql, params=None, prepare=None):
        if hot_cursor and len(cut) < times and matches(sql):
            cut.append(sql)
            terminate_backend(self._cursor.connection.info.backend_pid)
        return original(self, sql, params, prepare)

    reused.execute = hot_execute
    try:
        with connection.execute_wrapper(wrapper):
            yield cut
    finally:
        reused.execute = original
