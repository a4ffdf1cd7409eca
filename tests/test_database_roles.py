"""The runtime role's privileges (billing_site/database.py) cover every table, exactly."""

import pytest
from django.db import connection

from billing_site.database import RESETTABLE_SEQUENCES, RUNTIME_PRIVILEGES

pytestmark = pytest.mark.django_db

PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


def _tables() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
        )
        return {name for (name,) in cursor.fetchall()}


def test_every_table_has_an_entry_in_the_runtime_privileges_map():
    tables = _tables()
    assert tables - set(RUNTIME_PRIVILEGES) == set(), "tables the map forgets"
    assert set(RUNTIME_PRIVILEGES) - tables == set(), "map entries for tables that do not exist"


def test_the_runtime_role_holds_exactly_the_mapped_privileges(runtime_role):
    role, _ = runtime_role
    with connection.cursor() as cursor:
        for table, grant in RUNTIME_PRIVILEGES.items():
            for privilege in PRIVILEGES:
                cursor.execute("SELECT has_table_privilege(%s, %s, %s)", [role, table, privilege])
                assert cursor.fetchone()[0] == (privilege in grant.privileges), (table, privilege)
            for column in grant.update_columns:
                cursor.execute(
                    "SELECT has_column_privilege(%s, %s, %s, 'UPDATE')", [role, table, column]
                )
                assert cursor.fetchone()[0], (table, column)
        cursor.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolbypassrls FROM pg_roles"
            " WHERE rolname = %s",
            [role],
        )
        assert cursor.fetchone() == (False, False, False, False)
        cursor.execute(
            "SELECT count(*) FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles"
            " WHERE rolname = %s)",
            [role],
        )
        assert cursor.fetchone()[0] == 0


def test_the_suite_runs_as_the_runtime_role(runtime_role):
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        assert cursor.fetchone()[0] == runtime_role[0]


def test_hold_updates_are_limited_to_the_closing_columns(runtime_role):
    role, _ = runtime_role
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'ledger_hold'::regclass"
            " AND attnum > 0 AND NOT attisdropped"
            " AND has_column_privilege(%s, 'ledger_hold', attname, 'UPDATE')",
            [role],
        )
        assert {name for (name,) in cursor.fetchall()} == {
            "status",
            "captured_amount",
            "closed_at",
        }


def test_sequences_are_read_and_drawn_and_only_the_resettable_ones_moved(runtime_role):
    role, _ = runtime_role
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, has_sequence_privilege(%s, c.oid, 'USAGE'),"
            " has_sequence_privilege(%s, c.oid, 'UPDATE')"
            " FROM pg_class c WHERE c.relkind = 'S' AND c.relnamespace = 'public'::regnamespace",
            [role, role],
        )
        sequences = cursor.fetchall()
    assert sequences
    assert all(usage for _, usage, _ in sequences)
    movable = {name for name, _, update in sequences if update}
    assert movable == {f"{table}_id_seq" for table in RESETTABLE_SEQUENCES}
