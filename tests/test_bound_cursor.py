"""core.db.bound_cursor: arrays bound on the server, planned for their values."""

import json

import pytest
from django.db import DatabaseError, connection, transaction

from core.db import bound_cursor


def _plan_mode() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW plan_cache_mode")
        return cursor.fetchone()[0]


def _estimated_rows(cursor, ids: list[int]) -> int:
    """The planner's row estimate for unnest of ``ids`` under the session's plan cache
    mode, which decides for an unnamed extended-protocol statement just as for this
    prepared one (EXPLAIN of the statement itself would always plan for the values)."""
    cursor.execute("DEALLOCATE ALL")
    cursor.execute("PREPARE probe(bigint[]) AS SELECT * FROM unnest($1)")
    literal = "{" + ",".join(map(str, ids)) + "}"
    cursor.execute(f"EXPLAIN (FORMAT JSON) EXECUTE probe('{literal}')")
    (plan,) = cursor.fetchone()
    cursor.execute("DEALLOCATE probe")
    if isinstance(plan, str):  # Django's cursor hands json back as text
        plan = json.loads(plan)
    return plan[0]["Plan"]["Plan Rows"]


@pytest.mark.django_db
def test_statements_are_planned_for_the_array_they_get_and_the_mode_comes_back():
    connection.ensure_connection()
    before = _plan_mode()
    assert before == "force_generic_plan"  # the connection's default (ledger statements)
    with connection.cursor() as cursor:  # what the bound statements got before: a guess
        assert _estimated_rows(cursor, list(range(20_000))) != 20_000
    with bound_cursor() as cursor:
        # A generic plan guesses a fixed row count for unnest whatever the array holds.
        assert _estimated_rows(cursor, list(range(20_000))) == 20_000
        assert _estimated_rows(cursor, [1, 2, 3]) == 3
    assert _plan_mode() == before


@pytest.mark.django_db
def test_a_failed_statement_leaves_the_mode_to_the_rollback():
    connection.ensure_connection()
    with pytest.raises(DatabaseError), transaction.atomic(), bound_cursor() as cursor:
        cursor.execute("SELECT 1 / (SELECT count(*) - count(*) FROM unnest(%s::int[]))", [[1]])
    assert _plan_mode() == "force_generic_plan"
    with bound_cursor() as cursor:
        assert _estimated_rows(cursor, list(range(500))) == 500
    assert _plan_mode() == "force_generic_plan"
