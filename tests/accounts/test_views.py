"""Block and unblock from the staff UI: with a reason, shown on the account page and in
its audit trail of status changes."""

import pytest
from django.urls import reverse

from accounts.models import Account

pytestmark = pytest.mark.django_db


def test_operator_blocks_and_unblocks_with_a_reason(as_role, ui_users, ui_account):
    client = as_role("operator")
    client.post(
        reverse("accounts:status", args=[ui_account.pk, "block"]), {"reason": "fraud check"}
    )
    ui_account.refresh_from_db()
    assert ui_account.status == Account.Status.BLOCKED
    assert ui_account.status_reason == "fraud check"
    assert ui_account.status_changed_by == ui_users["operator"]
    page = client.get(reverse("backoffice:account", args=[ui_account.pk])).content.decode()
    assert "fraud check" in page
    assert 'data-action="unblock"' in page and 'data-action="block"' not in page
    assert "Blocked" in page.split('id="audit"')[1]  # the status change in the audit trail
    client.post(reverse("accounts:status", args=[ui_account.pk, "unblock"]), {"reason": "cleared"})
    ui_account.refresh_from_db()
    assert ui_account.status == Account.Status.OPEN


def test_a_block_without_a_reason_is_a_form_error(as_role, ui_account):
    response = as_role("operator").post(
        reverse("accounts:status", args=[ui_account.pk, "block"]), {"reason": ""}
    )
    assert response.status_code == 200
    ui_account.refresh_from_db()
    assert ui_account.status == Account.Status.OPEN
