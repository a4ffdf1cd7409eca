"""Invoicing in the staff UI: start a run (the real service, q2 in sync mode here), its
progress bar partial, approving a draft run, invoices with filters, export and PDF, and a
usage file previewed (nothing stored) before it is stored."""

import pytest
from django.conf import settings
from django.test import override_settings
from django.urls import reverse

from invoicing.models import Invoice, InvoiceRun, UsageRecord
from tests.invoicing.population import build_population

pytestmark = pytest.mark.django_db

SYNC = {**settings.Q_CLUSTER, "sync": True}


@pytest.fixture
def population(db):
    return build_population(6, period="2026-01")


@pytest.fixture
def start(django_capture_on_commit_callbacks):
    """Start a run from the form; its q2 tasks run at once (sync), as the commit queues them."""

    def _start(client, mode="issue"):
        with (
            override_settings(Q_CLUSTER=SYNC, INVOICING_PDF_ON_ISSUE=False),
            django_capture_on_commit_callbacks(execute=True),
        ):
            return client.post(reverse("invoicing:runs"), {"period": "2026-01", "mode": mode})

    return _start


def test_accountant_starts_a_run_and_its_progress_reaches_the_end(as_role, population, start):
    client = as_role("accountant")
    response = start(client)
    run = InvoiceRun.objects.get()
    assert response["Location"] == reverse("invoicing:run", args=[run.pk])
    assert run.status == InvoiceRun.Status.COMPLETED
    assert run.invoices_issued == Invoice.objects.count() == len(population.expected)
    progress = client.get(reverse("invoicing:run_progress", args=[run.pk]), HTTP_HX_REQUEST="true")
    body = progress.content.decode()
    assert 'data-status="completed"' in body
    assert "100%" in body
    assert "hx-trigger" not in body  # finished: the bar stops polling


def test_a_running_run_keeps_polling(as_role, population):
    client = as_role("accountant")
    run = InvoiceRun.objects.create(
        period_id=_period().pk, status=InvoiceRun.Status.RUNNING, total=10, processed=4
    )
    body = client.get(reverse("invoicing:run_progress", args=[run.pk])).content.decode()
    assert 'hx-trigger="every 1s"' in body
    assert "40%" in body


def _period():
    from invoicing.services import billing_period_get

    return billing_period_get("2026-01")


def test_a_draft_run_is_approved_from_its_page(
    as_role, population, start, django_capture_on_commit_callbacks
):
    client = as_role("accountant")
    start(client, mode="draft")
    run = InvoiceRun.objects.get()
    assert run.status == InvoiceRun.Status.DRAFT_READY
    assert (
        'id="approve-run"' in client.get(reverse("invoicing:run", args=[run.pk])).content.decode()
    )
    assert Invoice.objects.filter(status="draft").exists()
    with (
        override_settings(Q_CLUSTER=SYNC, INVOICING_PDF_ON_ISSUE=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        client.post(reverse("invoicing:run_approve", args=[run.pk]))
    run.refresh_from_db()
    assert run.status == InvoiceRun.Status.COMPLETED
    assert not Invoice.objects.filter(status="draft").exists()


def test_a_run_for_a_period_not_over_is_refused_on_the_form(as_role, population):
    response = as_role("accountant").post(
        reverse("invoicing:runs"), {"period": "2099-01", "mode": "issue"}
    )
    assert response.status_code == 200
    assert b'id="form-refusal"' in response.content
    assert not InvoiceRun.objects.exists()


def test_invoices_filter_export_and_pdf(as_role, population, start):
    start(as_role("accountant"))
    client = as_role("operator")
    account = population.accounts[0]
    page = client.get(reverse("invoicing:invoices"), {"account": account.pk}).content.decode()
    mine = Invoice.objects.filter(account=account)
    other = Invoice.objects.exclude(account=account).first()
    assert all(invoice.number in page for invoice in mine)
    assert other.number not in page
    export = client.get(reverse("invoicing:invoices"), {"account": account.pk, "export": "xlsx"})
    assert export["Content-Disposition"] == 'attachment; filename="invoices.xlsx"'
    assert b"".join(export.streaming_content)[:2] == b"PK"  # a zip: the XLSX container
    pdf = client.get(reverse("invoicing:invoice_pdf", args=[mine.first().pk]))
    assert pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")


def csv_file(rows):
    from django.core.files.uploadedfile import SimpleUploadedFile

    lines = ["account,service,quantity,occurred_at,external_id", *rows]
    return SimpleUploadedFile("usage.csv", ("\n".join(lines) + "\n").encode(), "text/csv")


def test_usage_upload_previews_row_errors_and_stores_nothing_until_confirmed(as_role, population):
    account = population.accounts[1]
    service = UsageRecord.objects.filter(account=account).first().service
    before = UsageRecord.objects.count()
    client = as_role("accountant")
    preview = client.post(
        reverse("invoicing:upload"),
        {
            "kind": "usage",
            "file": csv_file(
                [
                    f"{account.pk},{service.pk},3.5,2026-01-10T10:00:00+03:00,late-1",
                    f"{account.pk},{service.pk},-1,2026-01-10T10:00:00+03:00,late-2",
                    f"999999999,{service.pk},1,2026-01-10T10:00:00+03:00,late-3",
                ]
            ),
        },
    )
    body = preview.content.decode()
    assert 'id="upload-errors"' in body
    assert "negative_quantity" in body and "unknown_account" in body
    assert UsageRecord.objects.count() == before  # nothing stored by the preview
    token = client.session["upload"]["token"]
    client.post(reverse("invoicing:upload"), {"step": "confirm", "token": token})
    assert UsageRecord.objects.count() == before + 1
    assert UsageRecord.objects.filter(external_id="late-1").exists()
    # The same token cannot store the file twice.
    client.post(reverse("invoicing:upload"), {"step": "confirm", "token": token})
    assert UsageRecord.objects.count() == before + 1
