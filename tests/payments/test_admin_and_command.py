"""The admin's registry import (upload, preview, apply) and suspense pages, and the
``import_registry`` command."""

from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from payments.models import Registry, SuspenseItem
from tests.api.test_permissions import staff_client
from tests.payments.conftest import Pay, sber_txt


def balance(account):
    account.refresh_from_db()
    return account.balance


def test_admin_upload_previews_then_applies(admin_client, sber, accounts):
    a = accounts[0]
    data = sber_txt([Pay("1", a.number, "25.00"), Pay("2", "0000000000", "5.00")])
    page = admin_client.get(reverse("admin:payments_registry_changelist"))
    assert b"Import a registry" in page.content
    response = admin_client.post(
        reverse("admin:payments_registry_import"),
        {"agent": sber.pk, "file": SimpleUploadedFile("s.txt", data)},
    )
    registry = Registry.objects.get()
    assert response.status_code == 302 and str(registry.pk) in response["Location"]
    preview = admin_client.get(response["Location"])
    assert b"Would post" in preview.content and b"Apply the whole file" in preview.content
    assert balance(a) == 0
    applied = admin_client.post(response["Location"])
    assert applied.status_code == 302
    registry.refresh_from_db()
    assert registry.status == "applied" and balance(a) == Decimal("25.00")


def test_admin_refused_upload_is_a_message(admin_client, sber, accounts):
    data = sber_txt([Pay("1", accounts[0].number, "25.00")], total="1.00")
    response = admin_client.post(
        reverse("admin:payments_registry_import"),
        {"agent": sber.pk, "file": SimpleUploadedFile("s.txt", data)},
        follow=True,
    )
    assert response.status_code == 200
    assert b"control_total_mismatch" in response.content
    assert Registry.objects.count() == 0


def test_admin_import_needs_the_permission(sber, accounts):
    viewer = staff_client("payments.view_registry")
    response = viewer.post(
        reverse("admin:payments_registry_import"),
        {"agent": sber.pk, "file": SimpleUploadedFile("s.txt", b"x")},
    )
    assert response.status_code == 403 and Registry.objects.count() == 0


def test_admin_suspense_queue_shows_totals_and_assigns(admin_client, sber, accounts):
    data = sber_txt([Pay("1", "0000000000", "12.00")])
    call_command("import_registry", "--agent", "SBER", _file(data))
    item = SuspenseItem.objects.get()
    page = admin_client.get(reverse("admin:payments_suspenseitem_changelist"))
    assert b"Open: <strong>1</strong>" in page.content and b"12.00" in page.content
    url = reverse("admin:payments_suspenseitem_assign", args=[item.pk])
    bad = admin_client.post(url, {"account_number": "0000000000"})
    assert b"No client account" in bad.content
    done = admin_client.post(url, {"account_number": accounts[0].number})
    assert done.status_code == 302
    item.refresh_from_db()
    assert item.status == "assigned" and balance(accounts[0]) == Decimal("12.00")


def _file(data: bytes) -> str:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".txt", delete=False) as handle:
        handle.write(data)
    return handle.name


def test_command_dry_run_then_import(sber, accounts, capsys):
    a = accounts[0]
    path = _file(sber_txt([Pay("1", a.number, "40.00")]))
    call_command("import_registry", "--agent", "SBER", path, "--dry-run")
    assert "previewed" in capsys.readouterr().out and balance(a) == 0
    call_command("import_registry", "--agent", "SBER", path)
    out = capsys.readouterr().out
    assert "applied" in out and "posted 1 (40.00)" in out
    assert balance(a) == Decimal("40.00")


def test_command_refused_file_fails_with_the_reason(sber, accounts):
    path = _file(sber_txt([Pay("1", accounts[0].number, "40.00")], count=5))
    with pytest.raises(CommandError, match="control_count_mismatch"):
        call_command("import_registry", "--agent", "SBER", path)
    with pytest.raises(CommandError, match="No payment agent"):
        call_command("import_registry", "--agent", "NOPE", path)


def test_admin_shows_reconciliation_per_registry_and_per_agent_day(admin_client, sber, accounts):
    data = sber_txt([Pay("1", accounts[0].number, "8.00")])
    call_command("import_registry", "--agent", "SBER", _file(data))
    registry = Registry.objects.get()
    page = admin_client.get(reverse("admin:payments_registry_preview", args=[registry.pk]))
    assert b"Reconciliation" in page.content and b"Balanced" in page.content
    url = reverse("admin:payments_paymentagent_reconciliation", args=[sber.pk])
    day = admin_client.get(url)
    assert day.status_code == 200 and b"8.00" in day.content
    assert admin_client.get(url, {"date": "not a date"}).status_code == 200


def test_admin_sets_a_payment_rule_through_the_service(admin_client, brand):
    from payments.models import PaymentRule

    url = reverse("admin:payments_paymentrule_add")
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(
        url,
        {
            "brand": brand.pk,
            "max_amount": "100.00",
            "allowed_channels": ["bank"],
            "overpayment": "advance",
        },
    )
    assert response.status_code == 302, response.content[:500]
    rule = PaymentRule.objects.get()
    assert (rule.max_amount, rule.allowed_channels, rule.active) == (
        Decimal("100.00"),
        ["bank"],
        True,
    )
    bad = admin_client.post(url, {"overpayment": "advance"}, follow=True)
    assert PaymentRule.objects.count() == 1 and bad.status_code == 200
