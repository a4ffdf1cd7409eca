"""Reconciliation per registry and per agent per day: the figures and the differences."""

from decimal import Decimal

from django.utils import timezone

from ledger.models import Transaction
from ledger.services import business_date, transaction_reverse
from payments.models import Registry
from payments.reconciliation import agent_day_reconciliation, registry_reconciliation
from payments.services import registry_import, registry_preview
from tests.payments.conftest import Pay, sber_txt


def test_a_clean_registry_balances(sber, accounts):
    a, b, _ = accounts
    data = sber_txt(
        [
            Pay("1", a.number, "100.00", commission="1.50"),
            Pay("2", b.number, "50.00", commission="0.75"),
            Pay("3", "0000000000", "20.00", commission="0.30"),
        ]
    )
    registry = registry_import(agent=sber, file_name="s", content=data)
    rec = registry_reconciliation(registry)
    assert rec["file"]["count"] == 3 and rec["file"]["total"] == Decimal("170.00")
    assert rec["file"]["commission"] == Decimal("2.55")
    assert rec["posted"] == {"count": 2, "amount": Decimal("150.00")}
    assert (rec["suspense"]["count"], rec["suspense"]["amount"]) == (1, Decimal("20.00"))
    assert rec["suspense"]["open"] == 1
    assert rec["duplicates"] == {"count": 0, "amount": Decimal("0")}
    assert rec["commission"] == Decimal("2.55")
    assert rec["differences"] == [] and rec["balanced"] is True


def test_differences_are_listed(sber, accounts):
    a, b, _ = accounts
    registry_import(agent=sber, file_name="d1", content=sber_txt([Pay("1", a.number, "100.00")]))
    second = registry_import(
        agent=sber,
        file_name="d2",
        content=sber_txt([Pay("1", a.number, "90.00"), Pay("2", b.number, "10.00")]),
    )
    txn = Transaction.objects.get(external_id="SBER:2")
    transaction_reverse(transaction_obj=txn, reason="bank recalled it")
    rec = registry_reconciliation(second)
    assert rec["duplicates"] == {"count": 1, "amount": Decimal("90.00")}
    codes = [(d["code"], d.get("payment_id")) for d in rec["differences"]]
    assert codes == [("duplicate_differs", "1"), ("reversed", "2")]
    assert rec["differences"][0]["first"]["amount"] == "100.00"
    assert rec["balanced"] is False


def test_a_preview_is_not_applied(sber, accounts):
    preview = registry_preview(
        agent=sber, file_name="p", content=sber_txt([Pay("1", accounts[0].number, "5.00")])
    )
    rec = registry_reconciliation(preview)
    assert [d["code"] for d in rec["differences"]] == ["not_applied"]
    assert rec["posted"]["count"] == 0


def test_agent_day_adds_up_the_days_registries(sber, post_office, accounts):
    a, b, _ = accounts
    registry_import(
        agent=sber,
        file_name="m1",
        content=sber_txt([Pay("1", a.number, "10.00", commission="0.15")]),
    )
    registry_import(
        agent=sber,
        file_name="m2",
        content=sber_txt(
            [Pay("2", b.number, "20.00", commission="0.30"), Pay("3", "0000000000", "5.00")]
        ),
    )
    day = business_date(timezone.now())
    rec = agent_day_reconciliation(sber, day)
    assert len(rec["registries"]) == 2
    assert rec["file"]["total"] == Decimal("35.00")
    assert rec["posted"] == {"count": 2, "amount": Decimal("30.00")}
    assert rec["suspense"] == {"count": 1, "amount": Decimal("5.00")}
    assert rec["commission"] == Decimal("0.45")
    assert rec["payable_by_agent"] == Decimal("34.55")
    assert rec["balanced"] is True
    other_day = agent_day_reconciliation(sber, day.replace(year=day.year - 1))
    assert other_day["registries"] == [] and other_day["posted"]["count"] == 0
    assert agent_day_reconciliation(post_office, day)["registries"] == []
    assert Registry.objects.count() == 2
