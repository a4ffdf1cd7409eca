"""Payment intake in the staff UI: a registry previewed (nothing stored), then applied once;
registries with their reconciliation; the suspense queue, assigned or returned by
accountants; each page refused (403, nothing changed) to roles that may not use it."""

from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from ledger.models import Transaction
from payments.models import AgentPayment, Registry, SuspenseItem
from payments.services import registry_import
from tests.payments.conftest import Pay, sber_txt

pytestmark = pytest.mark.django_db

UPLOAD = reverse("payments:registry_upload")


def _file(content: bytes, name: str = "reestr.txt") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="text/plain")


def _good(accounts) -> bytes:
    return sber_txt(
        [
            Pay("P1", accounts[0].number, "100.00"),
            Pay("P2", accounts[1].number, "250.50"),
            Pay("P3", "40817810000000000000", "10.00"),  # unknown -> suspense
        ]
    )


def _stored() -> tuple[int, int, int, int]:
    return (
        Registry.objects.count(),
        AgentPayment.objects.count(),
        SuspenseItem.objects.count(),
        Transaction.objects.count(),
    )


def test_accountant_previews_a_registry_then_applies_it_once(as_role, sber, accounts):
    client = as_role("accountant")
    before = _stored()
    response = client.post(UPLOAD, {"agent": "SBER", "file": _file(_good(accounts))})
    body = response.content.decode()
    assert response.status_code == 200
    assert 'id="registry-preview"' in body
    assert 'id="control-ok"' in body
    assert "360.50" in body  # the lines' total
    assert _stored() == before  # a preview stores nothing
    token = client.session["registry_upload"]["token"]
    applied = client.post(UPLOAD, {"step": "apply", "token": token})
    registry = Registry.objects.get()
    assert applied["Location"] == reverse("payments:registry", args=[registry.pk])
    assert registry.status == Registry.Status.APPLIED
    assert (registry.posted, registry.suspense) == (2, 1)
    assert registry.posted_amount == Decimal("350.50")
    after = _stored()
    again = client.post(UPLOAD, {"step": "apply", "token": token})  # a second click
    assert again["Location"] == UPLOAD
    assert _stored() == after  # posted once
    page = client.get(reverse("payments:registry", args=[registry.pk])).content.decode()
    assert 'data-balanced="true"' in page
    assert 'id="registry-apply"' not in page


def test_preview_lists_row_errors_with_their_rows_and_cannot_be_applied(as_role, sber, accounts):
    client = as_role("accountant")
    content = sber_txt([Pay("P1", accounts[0].number, "100.00")]).replace(b";100,00;", b";abc;", 1)
    body = client.post(UPLOAD, {"agent": "SBER", "file": _file(content)}).content.decode()
    assert 'id="registry-errors"' in body
    assert "<td>1</td>" in body  # the row number
    assert 'id="registry-apply" disabled' in body
    token = client.session["registry_upload"]["token"]
    before = _stored()
    response = client.post(UPLOAD, {"step": "apply", "token": token}, follow=True)
    assert _stored() == before
    assert "broken" in response.content.decode()


def test_a_control_total_mismatch_is_refused_with_nothing_stored(as_role, sber, accounts):
    client = as_role("accountant")
    content = sber_txt([Pay("P1", accounts[0].number, "100.00")], total="99.00")
    before = _stored()
    body = client.post(UPLOAD, {"agent": "SBER", "file": _file(content)}).content.decode()
    assert "differs from the control line" in body
    assert 'id="registry-preview"' not in body
    assert _stored() == before
    assert "registry_upload" not in client.session


def test_operator_sees_registries_and_suspense_but_may_not_upload_or_resolve(
    as_role, sber, accounts
):
    registry_import(agent=sber, file_name="r.txt", content=_good(accounts))
    item = SuspenseItem.objects.get()
    client = as_role("operator")
    assert client.get(reverse("payments:registries")).status_code == 200
    assert client.get(reverse("payments:agents")).status_code == 200
    queue = client.get(reverse("payments:suspense")).content.decode()
    assert f'href="{reverse("payments:suspense_item", args=[item.pk])}"' in queue
    page = client.get(reverse("payments:suspense_item", args=[item.pk])).content.decode()
    assert 'id="suspense-assign"' not in page
    assert (
        'id="registry-upload-link"'
        not in client.get(reverse("payments:registries")).content.decode()
    )
    before = _stored()
    assert client.get(UPLOAD).status_code == 403
    assert client.post(UPLOAD, {"agent": "SBER", "file": _file(_good(accounts))}).status_code == 403
    forged = client.post(
        reverse("payments:suspense_item", args=[item.pk]),
        {"action": "assign", "account_number": accounts[2].number, "idempotency_key": "k1"},
    )
    assert forged.status_code == 403
    item.refresh_from_db()
    assert item.status == SuspenseItem.Status.OPEN
    assert _stored() == before


def test_viewer_without_payment_permissions_gets_403(as_role, sber):
    client = as_role("viewer")
    for name in ("registries", "suspense", "agents", "registry_upload"):
        assert client.get(reverse(f"payments:{name}")).status_code == 403


def test_operator_may_not_apply_a_previewed_registry(as_role, sber, accounts):
    registry = registry_import(agent=sber, file_name="r.txt", content=_good(accounts), dry_run=True)
    before = _stored()
    response = as_role("operator").post(reverse("payments:registry", args=[registry.pk]))
    assert response.status_code == 403
    registry.refresh_from_db()
    assert registry.status == Registry.Status.PREVIEWED
    assert _stored() == before


def test_accountant_applies_a_previewed_registry_once(as_role, sber, accounts):
    registry = registry_import(agent=sber, file_name="r.txt", content=_good(accounts), dry_run=True)
    client = as_role("accountant")
    url = reverse("payments:registry", args=[registry.pk])
    assert 'id="registry-apply"' in client.get(url).content.decode()
    client.post(url)
    registry.refresh_from_db()
    assert registry.status == Registry.Status.APPLIED
    after = _stored()
    page = client.post(url, follow=True).content.decode()
    assert "already applied" in page
    assert _stored() == after


def test_accountant_assigns_a_suspense_item_to_an_account(as_role, sber, accounts):
    registry_import(agent=sber, file_name="r.txt", content=_good(accounts))
    item = SuspenseItem.objects.get()
    target = accounts[2]
    client = as_role("accountant")
    queue = client.get(reverse("payments:suspense")).content.decode()
    assert 'id="suspense-totals"' in queue and "1 open" in queue
    url = reverse("payments:suspense_item", args=[item.pk])
    form = {"action": "assign", "account_number": target.number, "idempotency_key": "k-assign"}
    client.post(url, form)
    item.refresh_from_db()
    target.refresh_from_db()
    assert item.status == SuspenseItem.Status.ASSIGNED
    assert item.assigned_account_id == target.pk
    assert target.balance == Decimal("10.00")
    count = Transaction.objects.count()
    client.post(url, form)  # a double click: posted once
    assert Transaction.objects.count() == count


def test_assign_to_an_unknown_number_is_refused_with_nothing_moved(as_role, sber, accounts):
    registry_import(agent=sber, file_name="r.txt", content=_good(accounts))
    item = SuspenseItem.objects.get()
    before = _stored()
    body = (
        as_role("accountant")
        .post(
            reverse("payments:suspense_item", args=[item.pk]),
            {"action": "assign", "account_number": "nope", "idempotency_key": "k2"},
        )
        .content.decode()
    )
    assert "No client account with this number." in body
    assert _stored() == before


def test_accountant_returns_a_suspense_item_with_a_reason(as_role, sber, accounts):
    registry_import(agent=sber, file_name="r.txt", content=_good(accounts))
    item = SuspenseItem.objects.get()
    as_role("accountant").post(
        reverse("payments:suspense_item", args=[item.pk]),
        {"action": "return", "reason": "Payer asked", "idempotency_key": "k3"},
    )
    item.refresh_from_db()
    assert item.status == SuspenseItem.Status.RETURNED
    assert item.return_reason == "Payer asked"


def test_registry_list_exports_csv(as_role, sber, accounts):
    registry_import(agent=sber, file_name="r.txt", content=_good(accounts))
    response = as_role("operator").get(reverse("payments:registries") + "?export=csv")
    assert response["Content-Type"].startswith("text/csv")
    assert "r.txt" in b"".join(response.streaming_content).decode()
