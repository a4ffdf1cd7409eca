"""The object's "History" page in the admin shows its database audit trail.

Django's own history page lists the admin's ``LogEntry`` rows, which record
only what was done through the admin, without values. ``AuditHistoryMixin``
replaces it, at the same URL and behind the same "History" button, with the
audit events the database triggers wrote: changes made through the admin, the
API, commands, tasks and raw SQL alike, who made them, and old -> new values.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils.text import capfirst

from core.audit.history import RelatedEvents, audit_history

HISTORY_LIMIT = 500


class AuditHistoryMixin:
    """For a ``ModelAdmin`` of an audited model; list parts' events in ``audit_related``."""

    audit_related: tuple[RelatedEvents, ...] = ()
    object_history_template = "admin/audit/object_history.html"

    def history_view(self, request: Any, object_id: str, extra_context: Any = None) -> Any:
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_or_change_permission(request, obj):
            raise PermissionDenied
        entries = audit_history(obj, related=self.audit_related, limit=HISTORY_LIMIT)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Change history: {obj}",
            "subtitle": None,
            "entries": entries,
            "limit": HISTORY_LIMIT,
            "truncated": len(entries) >= HISTORY_LIMIT,
            "module_name": str(capfirst(self.opts.verbose_name_plural)),
            "object": obj,
            "opts": self.opts,
            "preserved_filters": self.get_preserved_filters(request),
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.object_history_template, context)
