"""The audit triggers: django-pghistory row events that also store what changed, old and new.

pghistory's own events store a snapshot of the row after the change and leave
the diff to a comparison with the previous event of the same object, which an
object created before tracking began does not have. These events store, in
the same row, ``pgh_diff``: ``{"field": [old, new]}`` for every tracked field
that the statement changed (values as PostgreSQL prints them, so money keeps
its scale), computed by the trigger itself from ``OLD`` and ``NEW``. They
also keep the database role of the session (``pgh_db_user``), which names
who ran a raw SQL change made outside the application.

Every trigger is a row-level ``AFTER`` trigger with a ``WHEN`` clause on the
tracked columns only: an update of untracked columns (an account's running
balance, written by every posting) is filtered by PostgreSQL before any
function runs and writes nothing.
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


def _diff_sql(columns: list[tuple[str, str]], operation: str) -> str:
    """``jsonb`` of ``{name: [old, new]}`` for the columns this row event changed."""
    pairs = []
    for name, column in columns:
        old, new = f'OLD."{column}"', f'NEW."{column}"'
        if operation == "INSERT":
            when, value = f"{new} IS NOT NULL", f"jsonb_build_array(NULL, {new}::text)"
        elif operation == "DELETE":
            when, value = f"{old} IS NOT NULL", f"jsonb_build_array({old}::text, NULL)"
        else:
            when = f"{old} IS DISTINCT FROM {new}"
            value = f"jsonb_build_array({old}::text, {new}::text)"
        pairs.append(f"'{name}', CASE WHEN {when} THEN {value} END")
    # jsonb_build_object takes at most 100 arguments: 50 fields per call, merged with ||.
    chunks = [pairs[i : i + 50] for i in range(0, len(pairs), 50)] or [[]]
    built = " || ".join(f"jsonb_build_object({', '.join(chunk)})" for chunk in chunks)
    return f"jsonb_strip_nulls({built})"


class AuditTrigger(PghistoryTrigger):
    """pghistory's event trigger (row level), plus ``pgh_diff`` and ``pgh_db_user``."""

    def get_func(self, model: Any) -> pgtrigger.Func:
        event_model = self.event_model
        row = self.row
        columns = _tracked_columns(event_model)
        values = {column: f'{row}."{column}"' for _, column in columns}
        values["pgh_created_at"] = pghistory_config.created_at_function()
        values["pgh_label"] = f"'{self.label}'"
        obj_pk = event_model._meta.get_field("pgh_obj").related_model._meta.pk.column
        values["pgh_obj_id"] = f'{row}."{obj_pk}"'
        values["pgh_context_id"] = "_pgh_attach_context()"
        values["pgh_diff"] = _diff_sql(columns, str(self.operation))
        values["pgh_db_user"] = "session_user"
        values = {key: values[key] for key in sorted(values)}
        cols = ", ".join(f'"{col}"' for col in values)
        sql = (
            f'INSERT INTO "{event_model._meta.db_table}" ({cols}) '
            f"VALUES ({', '.join(values.values())}); RETURN NULL;"
        )
        return pgtrigger.Func(sql)


class _AuditRowEvent(pghistory.RowEvent):
    def add_event_trigger(self, event_model: Any) -> None:
        pgtrigger.register(
            AuditTrigger(
                event_model=event_model,
                label=self.label,
                name=self.trigger_name,
                row=self.row,
                operation=self.operation,
                condition=self.condition,
                level=pgtrigger.Row,
            )
        )(event_model.pgh_tracked_model)


class Created(_AuditRowEvent):
    """A row was inserted: its tracked values, ``[null, new]`` each."""

    label = "create"
    trigger_name = "audit_create"
    row = "NEW"
    operation = pgtrigger.Insert


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
