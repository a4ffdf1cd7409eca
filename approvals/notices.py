"""What staff are told when a move they made was filed for approval instead of done."""

from __future__ import annotations

from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from approvals.models import ApprovalRequest


def approval_filed_notice(request: ApprovalRequest) -> SafeString:
    """ "Sent for approval: <summary> (request #N)", linking the request's admin page."""
    url = reverse("admin:approvals_approvalrequest_change", args=[request.pk])
    again = (
        " (already sent: this form was submitted before)"
        if getattr(request, "replayed", False)
        else ""
    )
    return format_html(
        'Sent for approval: {}. Another person must approve <a href="{}">request #{}</a> '
        "before {}; nothing has changed yet{}.",
        request.summary,
        url,
        request.pk,
        timezone.localtime(request.expires_at).strftime("%Y-%m-%d %H:%M %Z"),
        again,
    )
