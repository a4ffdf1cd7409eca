"""seed_demo: demo data written through the real services, whose ledger verifies."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.db.models import F
from django.utils import timezone

from accounts.models import Account, Client
from demo.seed import seed_demo
from invoicing.models import Invoice, InvoiceRun, MeterReading, Subscription, UsageRecord
from ledger.models import Entry, Hold, Transaction
from ledger.services import clear_system_account_cache
from ledger.verify import verify_ledger

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = 50


@pytest.fixture
def seeded():
    return seed_demo(clients=CLIENTS, seed=5, workers=2, group_size=10)


def test_seed_demo_ledger_verifies_and_invoices_are_issued_with_pdfs(seeded):
    assert verify_ledger() == []
    assert Client.objects.count() == CLIENTS
    assert Account.objects.filter(kind="client", parent__isnull=False).exists()
    kinds = set(Transaction.objects.values_list("kind", flat=True))
    assert kinds >= {"payment", "debit", "accrual", "hold_capture", "transfer", "adjustment"}
    assert Hold.objects.filter(status="captured", captured_amount__lt=F("amount")).exists()
    assert Subscription.objects.exists() and UsageRecord.objects.exists()
    assert MeterReading.objects.filter(consumption__gt=0).exists()

    runs = InvoiceRun.objects.all()
    assert runs.count() == 2
    assert all(run.status == InvoiceRun.Status.COMPLETED for run in runs)
    assert all(run.processed == run.total > 0 for run in runs)
    issued = Invoice.objects.exclude(status="draft")
    assert issued.count() == seeded.billing.invoices > 0
    assert not issued.filter(number="").exists()
    for invoice in issued:
        assert invoice.pdf and default_storage.exists(invoice.pdf.name)
        with default_storage.open(invoice.pdf.name, "rb") as handle:
            assert handle.read(5) == b"%PDF-"
    # Each invoice's total was posted to the ledger as an accrual of its own.
    accruals = Transaction.objects.filter(kind="accrual", subject_type="invoice")
    assert accruals.count() == issued.count()


def test_seed_demo_limits_are_the_ledgers_refused_debits_are_skipped(seeded):
    assert seeded.refused["write_off_limit_exceeded"] > 0
    assert seeded.refused["insufficient_funds"] > 0
    # No discretionary write-off on a sub-account beats its per-transaction limit.
    over = Entry.objects.filter(
        subaccount__isnull=False,
        transaction__kind__in=["debit", "hold_capture"],
        transaction__amount__gt=F("subaccount__write_off_limit_transaction"),
    )
    assert not over.exists()
    for account in Account.objects.filter(kind="client", parent__isnull=True):
        # Discretionary debits never took a payer past its credit line.
        lowest = (
            Entry.objects.filter(account=account, transaction__kind="debit")
            .order_by("balance_after")
            .values_list("balance_after", flat=True)
            .first()
        )
        if lowest is not None:
            assert lowest >= -account.credit_limit


def test_seed_demo_users_and_groups():
    seed_demo(clients=5, seed=1, workers=1)
    users = get_user_model().objects
    admin = users.get(username="admin")
    assert admin.is_superuser and admin.check_password("admin")
    operator = users.get(username="operator")
    assert operator.groups.filter(name="Operator").exists()  # backoffice.roles
    assert operator.has_perm("ledger.post_payment") and operator.has_perm("accounts.block_account")
    assert operator.has_perm("invoicing.view_invoice") and operator.has_perm(
        "invoicing.view_invoicerun"
    )
    assert not operator.has_perm("ledger.change_transaction")
    accountant = users.get(username="accountant")
    assert accountant.groups.filter(name="Accountant").exists()
    assert accountant.is_staff and not accountant.is_superuser
    for perm in (
        "invoicing.add_invoicerun",
        "invoicing.approve_invoicerun",
        "invoicing.recalculate_invoice",
        "ledger.post_payment",
        "ledger.view_entry",
    ):
        assert accountant.has_perm(perm), perm  # fmt: skip


def _snapshot() -> dict:
    """What a seed decides (ids and account numbers come from sequences, so left aside)."""
    clients = {c.pk: c.phone for c in Client.objects.all()}
    return {
        "clients": sorted(Client.objects.values_list("kind", "name", "tax_id", "phone")),
        "balances": sorted(
            (clients[a.client_id], a.name, a.balance, a.held, a.status)
            for a in Account.objects.filter(kind="client")
        ),
        "transactions": sorted(
            (clients[t.account.client_id], t.kind, t.amount, t.created_at)
            for t in Transaction.objects.select_related("account").filter(
                account__kind="client", created_at__lt=NOW
            )
        ),
        "invoices": sorted(
            (clients[i.account.client_id], i.total)
            for i in Invoice.objects.select_related("account")
        ),
    }


NOW = timezone.now().replace(microsecond=0)


def _flush():
    call_command("flush", verbosity=0, interactive=False)
    clear_system_account_cache()  # their ids died with the flush


def test_seed_demo_same_seed_same_data_other_seed_other_data():
    seed_demo(clients=30, seed=11, now=NOW, workers=2, group_size=5)
    first = _snapshot()
    _flush()
    seed_demo(clients=30, seed=11, now=NOW, workers=1, group_size=30)
    again = _snapshot()
    _flush()
    seed_demo(clients=30, seed=12, now=NOW, workers=1)
    other = _snapshot()
    assert first["transactions"] and first["invoices"]
    assert first == again
    assert first["clients"] != other["clients"]


def test_seed_demo_if_empty_does_nothing_when_clients_exist():
    call_command("seed_demo", clients=10, seed=1, verbosity=0, workers=1)
    counts = (Client.objects.count(), Transaction.objects.count(), Invoice.objects.count())
    call_command("seed_demo", clients=10, seed=1, if_empty=True, verbosity=0)
    assert (Client.objects.count(), Transaction.objects.count(), Invoice.objects.count()) == counts
    assert verify_ledger() == []


def test_seed_demo_refuses_negative_clients():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("seed_demo", clients=-1, verbosity=0)
    assert not Client.objects.exists()
    assert Decimal(0) == 0
