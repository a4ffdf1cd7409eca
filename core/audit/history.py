"""Reading the audit trail of one object: who changed what, when, old -> new, newest first.

An object's own events come from the event model that tracks its class
(``<Model>.pgh_event_models``); events of rows that belong to it (a tariff's
tiers, an API key's brand links) are added with ``RelatedEvents``. Values are
shown as people read them: choices by their label, references by the
referenced object, empty values as a dash.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.utils.text import capfirst

from core.audit.trackers import LABELS

EMPTY = "—"


def _no_subject(event: Any) -> str:
    return ""


@dataclass(frozen=True)
class RelatedEvents:
    """Events of rows that belong to the object: ``model`` events whose ``field`` is its id."""

    model: Any
    field: str
    subject: Callable[[Any], str] = _no_subject


@dataclass(frozen=True)
class FieldChange:
    name: str
    label: str
    old: str
    new: str


@dataclass
class HistoryEntry:
    at: datetime
    action: str
    subject: str
    actor: str
    actor_ref: str
    request_id: str
    changes: list[FieldChange] = field(default_factory=list)
    event: Any = None

    @property
    def metadata(self) -> dict[str, Any]:
        context = getattr(self.event, "pgh_context", None)
        return dict(context.metadata) if context is not None else {}


def event_model_of(model: type[models.Model]) -> Any:
    """The audit event model tracking ``model`` (None when it is not audited)."""
    event_models = set(getattr(model, "pgh_event_models", {}).values())
    return next(iter(event_models)) if len(event_models) == 1 else None


def audit_events(obj: models.Model) -> models.QuerySet:
    """The object's own audit events, newest first (with their contexts)."""
    event_model = event_model_of(type(obj))
    if event_model is None:
        raise LookupError(f"{type(obj).__name__} is not audited.")
    return (
        event_model.objects.filter(pgh_obj_id=obj.pk)
        .select_related("pgh_context")
        .order_by("-pgh_created_at", "-pgh_id")
    )


def audit_history(
    obj: models.Model, *, related: Iterable[RelatedEvents] = (), limit: int = 500
) -> list[HistoryEntry]:
    """The object's audit trail (and its parts' events), newest first, at most ``limit``."""
    sources: list[tuple[Any, Callable[[Any], str], str | None]] = [
        (event, _no_subject, None) for event in audit_events(obj)[:limit]
    ]
    for rel in related:
        events = (
            rel.model.objects.filter(**{rel.field: obj.pk})
            .select_related("pgh_context")
            .order_by("-pgh_created_at", "-pgh_id")[:limit]
        )
        sources.extend((event, rel.subject, rel.field) for event in events)
    sources.sort(key=lambda item: (item[0].pgh_created_at, item[0].pgh_id), reverse=True)
    sources = sources[:limit]
    values = _ValueFormatter([(event, hidden) for event, _, hidden in sources])
    users = _usernames(event for event, *_ in sources)
    entries = []
    for event, subject, hidden in sources:
        metadata = event.pgh_context.metadata if event.pgh_context_id else {}
        entries.append(
            HistoryEntry(
                at=event.pgh_created_at,
                action=LABELS.get(event.pgh_label, event.pgh_label),
                subject=subject(event),
                actor=actor_display(metadata, event.pgh_db_user, users),
                actor_ref=metadata.get("actor", ""),
                request_id=metadata.get("request_id", ""),
                changes=values.changes(event, hidden),
                event=event,
            )
        )
    return entries


def actor_display(metadata: dict[str, Any], db_user: str, users: dict[int, str]) -> str:
    actor = metadata.get("actor", "")
    kind, _, ident = actor.partition(":")
    if kind == "user":
        user_id = metadata.get("user")
        name = metadata.get("username") or users.get(user_id) or ""
        return f"{name} (user #{user_id})" if name else f"user #{user_id or ident}"
    if kind == "partner":
        text = f"partner {metadata.get('partner_name') or ''} (#{ident})".replace("  ", " ")
        if metadata.get("api_key"):
            text += f", API key #{metadata['api_key']}"
        return text
    if kind == "system":
        return f"system: {ident}"
    if metadata.get("user"):
        user_id = metadata["user"]
        return f"{users.get(user_id) or ''} (user #{user_id})".strip()
    return f"no application context (database role {db_user or '?'})"


def _usernames(events: Iterable[Any]) -> dict[int, str]:
    ids = {
        event.pgh_context.metadata.get("user")
        for event in events
        if event.pgh_context_id and not event.pgh_context.metadata.get("username")
    } - {None}
    if not ids:
        return {}
    user_model = get_user_model()
    return {
        pk: name
        for pk, name in user_model.objects.filter(pk__in=ids).values_list(
            "pk", user_model.USERNAME_FIELD
        )
    }


class _ValueFormatter:
    """Turns the stored text of old and new values into what the admin shows."""

    def __init__(self, events: Sequence[tuple[Any, str | None]]) -> None:
        # References are shown as the objects they point at: one query per referenced model.
        wanted: dict[type[models.Model], set[str]] = defaultdict(set)
        for event, hidden in events:
            tracked = event.pgh_tracked_model
            for name, pair in (event.pgh_diff or {}).items():
                model_field = _field(tracked, name)
                if name == hidden or not isinstance(model_field, models.ForeignKey):
                    continue
                wanted[model_field.related_model].update(v for v in pair if v is not None)
        self.objects: dict[type[models.Model], dict[str, str]] = {}
        for model, ids in wanted.items():
            found = model._default_manager.filter(pk__in=[i for i in ids if i.isdigit()])
            self.objects[model] = {str(obj.pk): str(obj) for obj in found}

    def changes(self, event: Any, hidden: str | None) -> list[FieldChange]:
        tracked = event.pgh_tracked_model
        order = [f.name for f in event._meta.fields]
        diff = event.pgh_diff or {}
        result = []
        for name in sorted(diff, key=lambda n: order.index(n) if n in order else len(order)):
            if name == hidden:
                continue
            model_field = _field(tracked, name)
            old, new = diff[name]
            label = capfirst(str(getattr(model_field, "verbose_name", name)))
            shown_old, shown_new = self.show(model_field, old), self.show(model_field, new)
            if shown_old != shown_new:  # a blank created as blank says nothing
                result.append(FieldChange(name, label, shown_old, shown_new))
        return result

    def show(self, model_field: models.Field | None, value: str | None) -> str:
        if value is None or value == "":
            return EMPTY
        if isinstance(model_field, models.ForeignKey):
            text = self.objects.get(model_field.related_model, {}).get(value)
            return f"{text} (#{value})" if text else f"#{value}"
        if isinstance(model_field, models.BooleanField):
            return {"true": "yes", "false": "no"}.get(value, value)
        choices = getattr(model_field, "flatchoices", None)
        if choices:
            return str(dict((str(k), v) for k, v in choices).get(value, value))
        base_field = getattr(model_field, "base_field", None)
        if base_field is not None and value.startswith("{") and value.endswith("}"):
            return ", ".join(item.strip('"') for item in value[1:-1].split(",") if item) or EMPTY
        return value


def _field(model: type[models.Model], name: str) -> models.Field | None:
    try:
        return model._meta.get_field(name)
    except FieldDoesNotExist:
        return None
