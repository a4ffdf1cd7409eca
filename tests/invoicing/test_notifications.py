"""Invoice emails through the outbox: written in the issuing transaction, sent by the q2 task
with the PDF attached, a failing mail server retried with backoff, resent from the admin."""

import smtplib
import threading
from datetime import date, timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.db import connection, transaction
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from invoicing import services
from invoicing.documents import invoice_email_key, invoice_emails_enqueue
from invoicing.ingest import usage_ingest_records
from invoicing.models import Invoice, InvoiceRun
from notifications import tasks as notification_tasks
from notifications.models import EmailMessage
from notifications.services import backoff_seconds, emails_send, emails_send_due
from tests.factories import AccountFactory, BrandFactory, ClientFactory, ServiceFactory, UserFactory
from tests.invoicing.pdf_helpers import pdf_text

SYNC_Q = override_settings(Q_CLUSTER={**settings.Q_CLUSTER, "sync": True})


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


@pytest.fixture
def brand(db):
    return BrandFactory(invoice_prefix="WT", name="Водоканал", legal_name="МУП «Водоканал»")


@pytest.fixture
def tariff(brand):
    water = ServiceFactory(brand=brand, name="Холодная вода", unit="м³")
    return services.tariff_create(
        service=water, kind="flat", price="450.00", valid_from=date(2026, 1, 1)
    )


def household(brand, tariff, email: str, name: str = "Петров Пётр"):
    account = AccountFactory(client=ClientFactory(name=name, email=email), brands=[brand])
    services.subscription_create(account=account, tariff=tariff, starts_on=date(2026, 1, 1))
    return account


def outbox() -> list[EmailMessage]:
    return list(EmailMessage.objects.order_by("pk"))


def test_issuing_writes_one_outbox_email_per_invoice_in_the_same_transaction(brand, tariff, bill):
    petrov = household(brand, tariff, "petrov@example.com")
    household(brand, tariff, "", name="Без Почты")  # no address: no email
    run = bill("2026-01")
    assert run.invoices_issued == 2
    invoice = Invoice.objects.get(account=petrov)
    [message] = outbox()
    assert (message.key, message.to, message.status, message.attempts) == (
        invoice_email_key(invoice.pk),
        "petrov@example.com",
        EmailMessage.Status.PENDING,
        0,
    )
    assert message.subject == f"Счёт № {invoice.number} за 2026-01 — Водоканал"
    assert "Здравствуйте, Петров Пётр!" in message.body
    assert "Сумма по счёту: 450,00 RUB." in message.body
    assert (message.subject_type, message.subject_id) == ("invoice", str(invoice.pk))
    assert message.attachments == [{"kind": "invoice_pdf", "ref": str(invoice.pk)}]
    # Reporting the same invoice again changes nothing.
    assert invoice_emails_enqueue(invoice_ids=[invoice.pk]) == []
    assert len(outbox()) == 1


def usage(account, service, quantity: str, external_id: str) -> None:
    result = usage_ingest_records(
        records=[
            {
                "account": account.pk,
                "service": service.pk,
                "quantity": quantity,
                "occurred_at": "2026-01-20T12:00:00+03:00",
                "external_id": external_id,
            }
        ]
    )
    assert result.accepted == 1


@pytest.fixture
def metered(brand, bill):
    """A household billed for January on 10 m³ at 40,00; the invoice email is in the outbox."""
    water = ServiceFactory(brand=brand, name="Горячая вода", unit="м³")
    tariff = services.tariff_create(
        service=water, kind="per_unit", price="40.00", valid_from=date(2026, 1, 1)
    )
    account = household(brand, tariff, "petrov@example.com")
    usage(account, water, "10", "jan-1")
    bill("2026-01")
    assert len(outbox()) == 1
    usage(account, water, "5", "jan-late")  # a late record: January is billed again
    return account


def test_adjustment_email_is_written_with_the_adjustment(metered):
    [adjustment] = services.invoice_recalculate(account=metered, period="2026-01")
    original = adjustment.adjusts
    assert adjustment.total == 200
    _invoice_email, message = outbox()
    assert message.key == invoice_email_key(adjustment.pk)
    assert message.subject == (
        f"Корректировочный счёт № {adjustment.number} к счёту № {original.number}"
        " за 2026-01 — Водоканал"
    )
    assert "Сумма по счёту: 200,00 RUB." in message.body


def test_rolled_back_issue_leaves_no_email(metered):
    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        [adjustment] = services.invoice_recalculate(account=metered, period="2026-01")
        assert EmailMessage.objects.filter(key=invoice_email_key(adjustment.pk)).count() == 1
        raise Abort
    assert Invoice.objects.filter(kind=Invoice.Kind.ADJUSTMENT).count() == 0
    assert [m.subject_id for m in outbox()] == [
        str(Invoice.objects.get(kind=Invoice.Kind.INVOICE).pk)
    ]


def test_send_task_sends_the_email_with_the_pdf_attached(brand, tariff, bill):
    petrov = household(brand, tariff, "petrov@example.com")
    bill("2026-01")
    invoice = Invoice.objects.get(account=petrov)
    [message] = outbox()
    assert notification_tasks.send_emails([message.pk]) == 1
    [sent] = mail.outbox
    assert sent.to == ["petrov@example.com"]
    assert sent.from_email == settings.DEFAULT_FROM_EMAIL
    assert sent.subject == message.subject
    [(filename, content, mimetype)] = sent.attachments
    assert (filename, mimetype) == (f"{invoice.number}.pdf", "application/pdf")
    text = pdf_text(content)
    assert f"Счёт № {invoice.number}" in text and "МУП «Водоканал»" in text and "450,00" in text
    message.refresh_from_db()
    assert (message.status, message.attempts, message.last_error) == ("sent", 1, "")
    assert message.sent_at is not None
    # The PDF the email rendered is the stored one.
    invoice.refresh_from_db()
    assert invoice.pdf.name
    # A re-delivered task sends nothing twice.
    assert notification_tasks.send_emails([message.pk]) == 0
    assert len(mail.outbox) == 1


class FlakyBackend(LocmemBackend):
    """A mail server that drops the first ``failures`` messages (SMTP is outside the system)."""

    failures = 0
    calls = 0

    def send_messages(self, messages):
        FlakyBackend.calls += 1
        if FlakyBackend.calls <= FlakyBackend.failures:
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        return super().send_messages(messages)


@pytest.fixture
def flaky(settings):
    settings.EMAIL_BACKEND = f"{__name__}.FlakyBackend"
    settings.BILLING_EMAIL_BACKOFF_BASE = 60
    settings.BILLING_EMAIL_BACKOFF_MAX = 3600
    FlakyBackend.calls = 0
    FlakyBackend.failures = 2
    return FlakyBackend


def test_failing_mail_server_is_retried_with_backoff_then_sent_exactly_once(
    brand, tariff, bill, flaky
):
    household(brand, tariff, "petrov@example.com")
    bill("2026-01")
    [message] = outbox()
    t0 = timezone.now()

    assert emails_send(ids=[message.pk], now=t0) == 0
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("pending", 1)
    assert message.last_error == "SMTPServerDisconnected: Connection unexpectedly closed"
    assert message.next_attempt_at == t0 + timedelta(seconds=60)
    # Asked again before the backoff is over (a duplicate task, the sweep): nothing happens.
    assert emails_send(ids=[message.pk], now=t0 + timedelta(seconds=30)) == 0
    assert emails_send_due(now=t0 + timedelta(seconds=59)) == 0
    assert flaky.calls == 1

    t1 = t0 + timedelta(seconds=61)
    assert emails_send_due(now=t1) == 0
    message.refresh_from_db()
    assert message.attempts == 2
    assert (
        message.next_attempt_at
        == t1 + timedelta(seconds=backoff_seconds(2))
        == t1 + timedelta(seconds=120)
    )

    t2 = t1 + timedelta(seconds=121)
    assert emails_send_due(now=t2) == 1
    message.refresh_from_db()
    assert (message.status, message.attempts, message.last_error) == ("sent", 3, "")
    assert len(mail.outbox) == 1
    assert emails_send_due(now=t2 + timedelta(days=1)) == 0
    assert len(mail.outbox) == 1 and flaky.calls == 3


def test_gives_up_after_the_last_attempt_and_the_admin_can_resend(
    brand, tariff, bill, flaky, settings, client, django_capture_on_commit_callbacks
):
    settings.BILLING_EMAIL_MAX_ATTEMPTS = 2
    flaky.failures = 2
    household(brand, tariff, "petrov@example.com")
    bill("2026-01")
    [message] = outbox()
    t0 = timezone.now()
    emails_send(ids=[message.pk], now=t0)
    emails_send_due(now=t0 + timedelta(seconds=61))
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("failed", 2)
    assert "SMTPServerDisconnected" in message.last_error
    assert emails_send_due(now=t0 + timedelta(days=1)) == 0

    staff = UserFactory(is_staff=True, is_superuser=True)
    staff.save()
    client.force_login(staff)
    changelist = reverse("admin:notifications_emailmessage_changelist")
    assert client.get(changelist).status_code == 200
    assert client.get(reverse("admin:notifications_emailmessage_change", args=[message.pk]))
    with SYNC_Q, django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            changelist, {"action": "resend", "_selected_action": [message.pk]}, follow=True
        )
    assert response.status_code == 200
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("sent", 1)
    assert [m.to for m in mail.outbox] == [["petrov@example.com"]]


def test_resend_needs_its_permission(brand, tariff, bill, client):
    household(brand, tariff, "petrov@example.com")
    bill("2026-01")
    [message] = outbox()
    viewer = UserFactory(is_staff=True)
    viewer.save()
    viewer.user_permissions.add(Permission.objects.get(codename="view_emailmessage"))
    client.force_login(viewer)
    changelist = reverse("admin:notifications_emailmessage_changelist")
    page = client.get(changelist)
    assert page.status_code == 200
    assert b'value="resend"' not in page.content
    client.post(changelist, {"action": "resend", "_selected_action": [message.pk]})
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("pending", 0)


def test_unreachable_mail_server_fails_every_claimed_message(brand, tariff, bill, settings):
    settings.EMAIL_BACKEND = f"{__name__}.UnreachableBackend"
    for n in range(3):
        household(brand, tariff, f"h{n}@example.com")
    bill("2026-01")
    ids = [m.pk for m in outbox()]
    assert emails_send(ids=ids) == 0
    assert set(EmailMessage.objects.values_list("attempts", "status", "last_error")) == {
        (1, "pending", "ConnectionRefusedError: [Errno 111] Connection refused")
    }


class UnreachableBackend(LocmemBackend):
    def open(self):
        raise ConnectionRefusedError(111, "Connection refused")


@pytest.mark.django_db(transaction=True)
def test_two_workers_sending_the_same_message_send_it_once(brand, tariff, bill):
    household(brand, tariff, "petrov@example.com")
    bill("2026-01")
    [message] = outbox()
    barrier = threading.Barrier(2)
    results: list[int] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            barrier.wait()
            results.append(emails_send(ids=[message.pk]))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(results) == [0, 1]
    assert len(mail.outbox) == 1
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("sent", 1)


@pytest.mark.django_db(transaction=True)
def test_run_through_q2_stores_every_pdf_and_emails_it(brand, tariff):
    accounts = [household(brand, tariff, f"h{n}@example.com") for n in range(7)]
    with SYNC_Q, override_settings(INVOICING_PDF_CHUNK_SIZE=3):
        run = services.invoice_run_start(period="2026-01", chunk_size=4)
    run.refresh_from_db()
    assert run.status == InvoiceRun.Status.COMPLETED and run.invoices_issued == 7
    invoices = {inv.account_id: inv for inv in Invoice.objects.all()}
    assert set(invoices) == {a.pk for a in accounts}
    assert all(inv.pdf.name.endswith(f"{inv.number}.pdf") for inv in invoices.values())
    assert set(EmailMessage.objects.values_list("status", "attempts")) == {("sent", 1)}
    assert sorted(m.to[0] for m in mail.outbox) == sorted(f"h{n}@example.com" for n in range(7))
    for sent in mail.outbox:
        [(filename, content, _mimetype)] = sent.attachments
        number = filename.removesuffix(".pdf")
        assert number in sent.subject and f"Счёт № {number}" in pdf_text(content)


def test_pending_email_ids_reads_only_the_asked_keys_messages(db):
    """A PDF task's pending emails are found key by key, whatever the planner makes of the
    outbox (``key IN (...) AND status = 'pending'`` after a 1,500,000-invoice month-end
    combined the keys with every pending message): 40 keys asked of an outbox of 3,000,
    of them 5 already sent and 3 never written."""
    from notifications.services import OutgoingEmail, emails_enqueue, pending_email_ids
    from tests.invoicing.reads import rows_read

    ids = emails_enqueue(
        [
            OutgoingEmail(key=f"bench:{n}", to=f"c{n}@example.com", subject="s", body="b")
            for n in range(3000)
        ],
        send=False,
    )
    assert len(ids) == 3000
    by_key = dict(EmailMessage.objects.values_list("key", "pk"))
    sent = [f"bench:{n}" for n in range(5)]
    EmailMessage.objects.filter(key__in=sent).update(
        status=EmailMessage.Status.SENT, sent_at=timezone.now()
    )
    keys = [f"bench:{n}" for n in range(37)] + ["bench:x", "bench:y", "bench:z"]
    with connection.cursor() as cursor:
        before = rows_read(cursor, "notifications_emailmessage")
        found = pending_email_ids(keys)
        read = rows_read(cursor, "notifications_emailmessage") - before
    assert found == sorted(by_key[f"bench:{n}"] for n in range(5, 37))
    assert read <= 37, read  # the 37 messages written, each once
