"""Registry import: preview, apply whole or not at all, suspense, duplicates, concurrency."""

from decimal import Decimal

import pytest
from django.db.models import Sum

from accounts.models import Account
from accounts.services import account_close
from core.validators import account_number_from_sequence
from ledger.models import Entry, Transaction
from ledger.services import payment_post
from payments.exceptions import RegistryAlreadyApplied, RegistryRefused
from payments.models import AgentPayment, Registry, SuspenseItem
from payments.services import (
    payment_agent_create,
    registry_apply,
    registry_import,
    registry_layout_create,
    registry_preview,
)
from tests.ledger.concurrency import run_in_threads
from tests.payments.conftest import Pay, csv_total, sber_txt


def balance(account) -> Decimal:
    account.refresh_from_db()
    return account.balance


def mistyped(number: str) -> str:
    """The same number with a wrong check digit."""
    return number[:-1] + str((int(number[-1]) + 1) % 10)


def suspense_balance() -> Decimal:
    return Entry.objects.filter(account__kind=Account.Kind.SUSPENSE).aggregate(s=Sum("amount"))[
        "s"
    ] or Decimal("0")


def test_apply_posts_each_row_to_its_account(sber, accounts):
    a, b, _ = accounts
    data = sber_txt(
        [Pay("1001", a.number, "150.00", commission="2.25"), Pay("1002", b.number, "99.99")]
    )
    registry = registry_import(agent=sber, file_name="sber.txt", content=data)
    assert registry.status == Registry.Status.APPLIED
    assert (registry.rows, registry.posted, registry.posted_amount) == (2, 2, Decimal("249.99"))
    assert (registry.suspense, registry.duplicates) == (0, 0)
    assert registry.commission == Decimal("2.25")
    assert balance(a) == Decimal("150.00") and balance(b) == Decimal("99.99")
    txn = Transaction.objects.get(account=a)
    assert (txn.kind, txn.channel, txn.external_id) == ("payment", "agent", "SBER:1001")
    assert txn.metadata["registry"] == registry.pk and txn.metadata["row"] == 1
    claims = AgentPayment.objects.filter(registry=registry).order_by("row")
    assert [(c.payment_id, c.outcome, c.transaction_id) for c in claims] == [
        ("1001", "posted", txn.pk),
        ("1002", "posted", Transaction.objects.get(account=b).pk),
    ]


def test_commission_comes_from_the_rate_when_the_file_has_none(post_office, accounts):
    data = csv_total([Pay("A", accounts[0].number, "100.00"), Pay("B", accounts[1].number, "0.25")])
    registry = registry_import(agent=post_office, file_name="p.csv", content=data)
    # 2% of 100.00 and of 0.25 (0.005 rounds half up to 0.01)
    assert registry.commission == Decimal("2.01")


def test_preview_moves_nothing_and_apply_then_posts(post_office, accounts):
    a = accounts[0]
    data = csv_total([Pay("A", a.number, "10.00"), Pay("B", "0000000000", "5.00")])
    registry = registry_preview(agent=post_office, file_name="p.csv", content=data)
    assert registry.status == Registry.Status.PREVIEWED
    assert (registry.posted, registry.suspense, registry.suspense_amount) == (
        1,
        1,
        Decimal("5.00"),
    )
    assert Transaction.objects.count() == 0 and AgentPayment.objects.count() == 0
    applied = registry_apply(registry=registry.pk)
    assert applied.status == Registry.Status.APPLIED
    assert balance(a) == Decimal("10.00")
    with pytest.raises(RegistryAlreadyApplied):
        registry_apply(registry=registry.pk)
    assert Transaction.objects.count() == 2


def test_unknown_closed_and_mistyped_numbers_go_to_suspense_with_the_raw_row(sber, accounts):
    a, closed, _ = accounts
    account_close(account=closed, reason="moved out")
    data = sber_txt(
        [
            Pay("1", a.number, "10.00"),
            Pay("2", closed.number, "20.00"),
            Pay("3", mistyped(a.number), "30.00"),
            Pay("4", account_number_from_sequence(999_999_998), "40.00"),  # valid, nobody's
        ]
    )
    registry = registry_import(agent=sber, file_name="s.txt", content=data)
    assert (registry.posted, registry.suspense, registry.suspense_amount) == (
        1,
        3,
        Decimal("90.00"),
    )
    items = {i.row: i for i in SuspenseItem.objects.filter(registry=registry)}
    assert {row: i.reason for row, i in items.items()} == {
        2: "account_closed",
        3: "invalid_check_digit",
        4: "unknown_account",
    }
    assert items[3].raw.split(";")[4:6] == ["3", mistyped(a.number)]
    assert all(i.status == "open" and i.receipt_transaction_id for i in items.values())
    assert suspense_balance() == Decimal("90.00")
    assert balance(a) == Decimal("10.00")


def test_the_same_file_twice_and_an_overlapping_file_never_post_twice(sber, accounts):
    a, b, c = accounts
    first = sber_txt([Pay("1", a.number, "10.00"), Pay("2", b.number, "20.00")])
    registry_import(agent=sber, file_name="day1.txt", content=first)
    again = registry_import(agent=sber, file_name="day1-again.txt", content=first)
    assert (again.posted, again.duplicates, again.duplicates_amount) == (0, 2, Decimal("30.00"))
    overlap = sber_txt([Pay("2", b.number, "20.00"), Pay("3", c.number, "30.00")])
    third = registry_import(agent=sber, file_name="day2.txt", content=overlap)
    assert (third.posted, third.duplicates) == (1, 1)
    assert [balance(x) for x in accounts] == [Decimal("10.00"), Decimal("20.00"), Decimal("30.00")]
    assert Transaction.objects.filter(kind="payment").count() == 3


def test_a_payment_id_twice_in_one_file_posts_once(post_office, accounts):
    a = accounts[0]
    data = csv_total([Pay("X", a.number, "10.00"), Pay("X", a.number, "10.00")])
    registry = registry_import(agent=post_office, file_name="p.csv", content=data)
    assert (registry.rows, registry.posted, registry.duplicates) == (2, 1, 1)
    assert balance(a) == Decimal("10.00")


def test_the_same_payment_id_of_another_agent_is_another_payment(sber, post_office, accounts):
    a = accounts[0]
    registry_import(agent=sber, file_name="s", content=sber_txt([Pay("7", a.number, "1.00")]))
    registry_import(
        agent=post_office, file_name="p", content=csv_total([Pay("7", a.number, "2.00")])
    )
    assert balance(a) == Decimal("3.00")


def test_a_file_with_row_errors_is_previewed_but_never_applied(post_office, accounts):
    a = accounts[0]
    data = csv_total([Pay("A", a.number, "10.00"), Pay("B", a.number, "5.00")])
    data = data.replace(b",5.00,", b",5.0.0,")
    preview = registry_import(agent=post_office, file_name="p.csv", content=data, dry_run=True)
    assert [(e["row"], e["column"], e["code"]) for e in preview.errors] == [
        (4, "amount", "invalid_amount")
    ]
    with pytest.raises(RegistryRefused) as info:
        registry_import(agent=post_office, file_name="p.csv", content=data)
    assert info.value.details["reason"] == "row_errors"
    with pytest.raises(RegistryRefused):
        registry_apply(registry=preview.pk)
    assert Transaction.objects.count() == 0 and AgentPayment.objects.count() == 0
    assert balance(a) == 0
    assert Registry.objects.count() == 1  # only the dry run's preview


def test_a_refused_file_leaves_nothing_behind(sber, accounts):
    data = sber_txt([Pay("1", accounts[0].number, "10.00")], total="11.00")
    with pytest.raises(RegistryRefused) as info:
        registry_import(agent=sber, file_name="s.txt", content=data)
    assert info.value.details["reason"] == "control_total_mismatch"
    assert Registry.objects.count() == 0 and Transaction.objects.count() == 0


def test_registry_payments_pay_open_invoices_like_any_payment(sber, accounts, brand):
    from tests.payments.helpers import issue_invoice

    a = accounts[0]
    invoice = issue_invoice(a, brand, "300.00")
    registry_import(agent=sber, file_name="s", content=sber_txt([Pay("1", a.number, "100.00")]))
    invoice.refresh_from_db()
    assert (invoice.paid_amount, invoice.status) == (Decimal("100.00"), "partly_paid")


def test_a_staff_described_layout_imports(db, accounts):
    layout = registry_layout_create(
        name="Terminal",
        encoding="utf-8",
        delimiter="|",
        decimal_separator=",",
        date_format="%d.%m.%Y",
        columns={"payment_id": 0, "account": 1, "amount": 2, "paid_at": 3},
        control_line="last",
        control_prefix="TOTAL",
        control_columns={"count": 0, "total": 1},
    )
    agent = payment_agent_create(
        code="TERM", name="Terminals", format="custom", layout=layout, commission_rate="1"
    )
    text = f"T1|{accounts[0].number}|12,34|01.12.2026\nTOTAL|1|12,34\n"
    registry = registry_import(agent=agent, file_name="t.txt", content=text.encode())
    assert (registry.posted, registry.posted_amount) == (1, Decimal("12.34"))
    assert balance(accounts[0]) == Decimal("12.34")


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_applies_of_the_same_file_post_each_row_once():
    agent = payment_agent_create(code="SB", name="Sber", format="sber-txt")
    from tests.factories import AccountFactory

    accounts = [AccountFactory() for _ in range(20)]
    data = sber_txt([Pay(str(i), acc.number, "10.00") for i, acc in enumerate(accounts)])
    previews = [
        registry_preview(agent=agent, file_name=f"copy{i}.txt", content=data) for i in range(2)
    ]
    outcomes = run_in_threads([lambda r=r: registry_apply(registry=r.pk) for r in previews])
    assert [o.code for o in outcomes] == [None, None]
    posted = sorted(o.value.posted for o in outcomes)
    duplicates = sorted(o.value.duplicates for o in outcomes)
    assert posted == [0, 20] and duplicates == [0, 20]
    assert Transaction.objects.filter(kind="payment").count() == 20
    assert AgentPayment.objects.count() == 20
    assert all(balance(acc) == Decimal("10.00") for acc in accounts)


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_applies_of_one_registry_apply_it_once():
    agent = payment_agent_create(code="SB", name="Sber", format="sber-txt")
    from tests.factories import AccountFactory

    acc = AccountFactory()
    registry = registry_preview(
        agent=agent, file_name="s", content=sber_txt([Pay("1", acc.number, "10.00")])
    )
    outcomes = run_in_threads([lambda: registry_apply(registry=registry.pk)] * 2)
    assert sorted(o.code or "ok" for o in outcomes) == ["ok", "registry_already_applied"]
    assert balance(acc) == Decimal("10.00")


def test_every_claim_names_the_transaction_that_carried_it(sber, accounts):
    """Claims are written with their transaction (ids taken before the claim): the posted
    lines' payments, the suspense lines' receipts, in line order within each kind."""
    a, b, _ = accounts
    data = sber_txt(
        [
            Pay("1", a.number, "10.00"),
            Pay("2", mistyped(a.number), "20.00"),
            Pay("3", b.number, "30.00"),
            Pay("4", account_number_from_sequence(999_999_998), "40.00"),
        ]
    )
    registry = registry_import(agent=sber, file_name="s.txt", content=data)
    claims = {c.payment_id: c for c in AgentPayment.objects.filter(registry=registry)}
    payments = list(
        Transaction.objects.filter(kind="payment", account__kind="client").order_by("pk")
    )
    assert [(t.external_id, t.amount) for t in payments] == [
        ("SBER:1", Decimal("10.00")),
        ("SBER:3", Decimal("30.00")),
    ]
    receipts = {i.row: i.receipt_transaction_id for i in SuspenseItem.objects.all()}
    assert {pid: (c.outcome, c.transaction_id) for pid, c in claims.items()} == {
        "1": ("posted", payments[0].pk),
        "2": ("suspense", receipts[2]),
        "3": ("posted", payments[1].pk),
        "4": ("suspense", receipts[4]),
    }
    assert payments[1].pk < receipts[2] < receipts[4]


def test_a_line_the_ledger_refuses_goes_to_suspense_and_its_claim_names_the_receipt(sber, accounts):
    """The ledger refuses a line the claim let through (its external id was already posted
    by another path): it goes to suspense (its receipt without the external id, which the
    earlier payment holds), and its claim is updated to the receipt."""
    a, b, _ = accounts
    earlier = payment_post(account=b.pk, amount="30.00", channel="agent", external_id="SBER:3")
    data = sber_txt(
        [
            Pay("1", a.number, "10.00"),
            Pay("2", mistyped(a.number), "20.00"),
            Pay("3", b.number, "30.00"),
        ]
    )
    registry = registry_import(agent=sber, file_name="s.txt", content=data)
    assert (registry.posted, registry.suspense) == (1, 2)
    items = {i.row: i for i in SuspenseItem.objects.filter(registry=registry)}
    assert items[3].reason == "refused" and "duplicate_payment" in items[3].reason_detail
    claims = {c.payment_id: c for c in AgentPayment.objects.filter(registry=registry)}
    posted = Transaction.objects.get(kind="payment", external_id="SBER:1")
    assert {pid: (c.outcome, c.transaction_id) for pid, c in claims.items()} == {
        "1": ("posted", posted.pk),
        "2": ("suspense", items[2].receipt_transaction_id),
        "3": ("suspense", items[3].receipt_transaction_id),
    }
    assert items[2].receipt_transaction_id < items[3].receipt_transaction_id
    assert balance(b) == earlier.amount
    receipt = Transaction.objects.get(pk=items[3].receipt_transaction_id)
    assert (receipt.external_id, receipt.metadata["payment_id"]) == ("", "3")
    assert suspense_balance() == Decimal("50.00")


def test_the_stored_file_is_kept_byte_for_byte_and_compressed_with_lz4(sber, accounts):
    """Migration 0007 has the database compress registry files with lz4 (this server has
    it); the file read back is the one received."""
    from django.db import connection

    a, b, c = accounts
    data = sber_txt([Pay(f"{n}", (a, b, c)[n % 3].number, "1.00") for n in range(1, 301)])
    registry = registry_import(agent=sber, file_name="big.txt", content=data)
    assert bytes(Registry.objects.get(pk=registry.pk).content) == data
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_column_compression(content) FROM payments_registry WHERE id = %s",
            [registry.pk],
        )
        assert cursor.fetchone()[0] == "lz4"
