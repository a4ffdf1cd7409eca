"""The base of every audit event table, and the helper each app declares its own with.

An app tracks its model next to it, in its own ``models.py``::

    class AccountEvent(
        audit_event_model(Account, fields=ACCOUNT_AUDITED_FIELDS, verbose_name="account event")
    ):
        pass

which creates the table ``accounts_accountevent`` and, through migrations,
the triggers on ``accounts_account`` that fill it (see ``core.audit.trackers``).
Who acted is attached by ``pghistory.context`` (``core.audit.context``) and
kept once per request, command or task in ``pghistory_context``.
"""

from __future__ import annotations

from typing import Any

import pghistory
from django.db import models
from pghistory.models import Event

from core.audit.trackers import Changed, Created, Deleted


class AuditEvent(Event):
    """One change of one row: label, time, context (the actor), snapshot and diff."""

    pgh_diff = models.JSONField(
        default=dict,
        help_text='What changed: {"field": [old, new]}, values as the database prints them.',
    )
    pgh_db_user = models.TextField(
        default="", help_text="The database role of the session that made the change."
    )

    class Meta:
        abstract = True


def audit_event_model(
    tracked_model: type[models.Model],
    *,
    fields: list[str],
    create: bool = True,
    change: bool = True,
    delete: bool = False,
    verbose_name: str = "",
    app_label: str | None = None,
) -> Any:
    """An abstract event model for ``tracked_model``: subclass it in the app's ``models.py``.

    ``fields`` are the tracked fields: they are copied into each event (the row
    after the change, or before a delete) and an update fires the trigger only
    when one of them changes. Event rows cannot be updated or deleted.
    The subclass declares no ``Meta`` of its own (it would drop the append-only
    trigger): pass ``verbose_name`` here. ``app_label`` places the event table in
    another app than the tracked model's (for an automatic many-to-many table,
    whose other side loads later).
    """
    trackers = []
    if create:
        trackers.append(Created())
    if change:
        trackers.append(Changed(condition=pghistory.AnyChange(*fields)))
    if delete:
        trackers.append(Deleted())
    return pghistory.create_event_model(
        tracked_model,
        *trackers,
        fields=fields,
        base_model=AuditEvent,
        obj_field=pghistory.ObjForeignKey(related_name="audit_events", related_query_name="+"),
        append_only=True,
        app_label=app_label,
        meta={"verbose_name": verbose_name} if verbose_name else None,
        abstract=True,
    )
