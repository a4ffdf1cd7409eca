"""The audit triggers: django-pghistory row events that also store what changed, old and new.

pghistory's own events store a snapshot of the row after the change and leave
the diff to a comparison with the previous event of the same object, which an
object created before tracking began does not have. These events store, in
the same row, ``pgh_diff``: ``{"field": [old, new]}`` for every tracked field
that the statement changed (values as PostgreSQL prints them, so money keeps
its scale), computed by the trigger itself from ``OLD`` and ``NEW``. They
also keep the database role of the session (``pgh_db_user``), which names
who ran a raw SQL change made outside the application.

Updates and deletes are recorded by row-level ``AFTER`` triggers, updates with
a ``WHEN`` clause on the tracked columns only: an update of untracked columns
(an account's running balance, written by every posting) is filtered by
PostgreSQL before any function runs and writes nothing. Inserts are recorded
by a statement-level trigger, once per statement, so bulk loads stay fast.
"""

from __future__ import annotations

from typing import Any

import pghistory
import pgtrigger
from django.db import models
from pghistory import config as pghistory_config
from pghistory.trigger import Event as PghistoryTrigger


def _tracked_columns(event_model: Any) -> list[tuple[str, str]]:
    """(field name, column) of each tracked-model field the event model copies, in order."""
    tracked = {f.name: f for f in event_model.pgh_tracked_model._meta.fields}
    return [
        (field.name, tracked[field.name].column)
        for field in event_model._meta.fields
        if field.name in tracked and field.concrete and not isinstance(field, models.AutoField)
    ]


def _diff_sql(columns: list[tuple[str, str]], operation: str, old: str, new: str) -> str:
    """``jsonb`` of ``{name: [old, new]}`` for the columns this row event changed."""
    pairs = []
    for name, column in columns:
        before, after = f'{old}."{column}"', f'{new}."{column}"'
        if operation == "INSERT":
            when, value = f"{after} IS NOT NULL", f"jsonb_build_array(NULL, {after}::text)"
        elif operation == "DELETE":
            when, value = f"{before} IS NOT NULL", f"jsonb_build_array({before}::text, NULL)"
        else:
            when = f"{before} IS DISTINCT FROM {after}"
            value = f"jsonb_build_array({before}::text, {after}::text)"
        pairs.append(f"'{name}', CASE WHEN {when} THEN {value} END")
    # jsonb_build_object takes at most 100 arguments: 50 fields per call, merged with ||.
    chunks = [pairs[i : i + 50] for i in range(0, len(pairs), 50)] or [[]]
    built = " || ".join(f"jsonb_build_object({', '.join(chunk)})" for chunk in chunks)
    return f"jsonb_strip_nulls({built})"


# The context of the event, when the application set one: pghistory's _pgh_attach_context()
# upserts it. Outside any context the function is not called at all: it looks the settings
# up in an exception block, and an exception caught inside a trigger costs time in
# proportion to the trigger events pending in the transaction (the deferred foreign-key
# checks of a bulk insert), which made loading accounts quadratic.
ATTACH_CONTEXT = (
    "CASE WHEN NULLIF(current_setting('pghistory.context_id', true), '') IS NULL"
    " THEN NULL ELSE _pgh_attach_context() END"
)


class AuditTrigger(PghistoryTrigger):
    """pghistory's event trigger, plus ``pgh_diff`` and ``pgh_db_user``.

    Row level (``NEW``/``OLD``), or statement level for inserts: one call per
    statement, reading the inserted rows from the transition table, so that
    bulk loads (COPY, ``bulk_create``) pay once per statement.
    """

    def get_declare(self, model: Any) -> list[tuple[str, str]]:
        return [("_audit_context_id", "UUID")] if self.level == pgtrigger.Statement else []

    def get_func(self, model: Any) -> pgtrigger.Func:
        event_model = self.event_model
        statement = self.level == pgtrigger.Statement
        row = "_row" if statement else self.row
        old, new = ("_row", "_row") if statement else ("OLD", "NEW")
        columns = _tracked_columns(event_model)
        values = {column: f'{row}."{column}"' for _, column in columns}
        values["pgh_created_at"] = pghistory_config.created_at_function()
        values["pgh_label"] = f"'{self.label}'"
        obj_pk = event_model._meta.get_field("pgh_obj").related_model._meta.pk.column
        values["pgh_obj_id"] = f'{row}."{obj_pk}"'
        values["pgh_context_id"] = "_audit_context_id" if statement else ATTACH_CONTEXT
        values["pgh_diff"] = _diff_sql(columns, str(self.operation), old, new)
        values["pgh_db_user"] = "session_user"
        values = {key: values[key] for key in sorted(values)}
        cols = ", ".join(f'"{col}"' for col in values)
        table = event_model._meta.db_table
        if not statement:
            sql = f'INSERT INTO "{table}" ({cols}) VALUES ({", ".join(values.values())});'
        else:
            if self.operation != pgtrigger.Insert:
                raise ValueError("Statement-level audit triggers record inserts only.")
            sql = (
                "IF EXISTS (SELECT 1 FROM new_values) THEN "
                f"_audit_context_id := {ATTACH_CONTEXT}; "
                f'INSERT INTO "{table}" ({cols}) SELECT {", ".join(values.values())} '
                f'FROM new_values AS _row ORDER BY _row."{obj_pk}"; '
                "END IF;"
            )
        return pgtrigger.Func(sql + " RETURN NULL;")


class _AuditRowEvent(pghistory.RowEvent):
    level = pgtrigger.Row

    def add_event_trigger(self, event_model: Any) -> None:
        pgtrigger.register(
            AuditTrigger(
                event_model=event_model,
                label=self.label,
                name=self.trigger_name,
                row=self.row,
                operation=self.operation,
                condition=self.condition,
                level=self.level,
            )
        )(event_model.pgh_tracked_model)


class Created(_AuditRowEvent):
    """Rows were inserted: their tracked values, ``[null, new]`` each (one call per statement)."""

    label = "create"
    trigger_name = "audit_create"
    row = "NEW"
    operation = pgtrigger.Insert
    level = pgtrigger.Statement


class Changed(_AuditRowEvent):
    """An update changed at least one tracked field (``WHEN`` on those columns only)."""

    label = "change"
    trigger_name = "audit_change"
    row = "NEW"
    operation = pgtrigger.Update


class Deleted(_AuditRowEvent):
    """A row was deleted: its tracked values, ``[old, null]`` each."""

    label = "delete"
    trigger_name = "audit_delete"
    row = "OLD"
    operation = pgtrigger.Delete


LABELS = {"create": "created", "change": "changed", "delete": "deleted"}
