"""Statements of a payer, of a sub-account, of a system account; their JSON and XLSX.

The payer's statement reads the covering index (opening from the last ``balance_after``
before the period, movements one range scan); a sub-account's and a system account's
opening is the sum of what came before. Hand-computed ledger (RUB, Europe/Moscow):

    payer p   1 Mar payment 100 | 2 Mar debit 30 (for sub-account s) | 3 Mar debit 10
              4 Mar payment 5 (for s)
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from openpyxl import load_workbook
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIClient

from accounts.models import Account
from core.api.scope import Scope
from core.caller import SYSTEM
from ledger.services import accrual_post, debit_post, payment_post, system_account_id
from reports.api.serializers import StatementEntrySerializer
from reports.api.views import statement_data, statement_json
from reports.exports import write_xlsx
from reports.standard import Column, Report, movement_sums, payer_stream, statement
from tests.factories import AccountFactory, BrandFactory, UserFactory

pytestmark = pytest.mark.django_db

MSK = ZoneInfo("Europe/Moscow")
D = Decimal
STAFF = Scope(brand_ids=None, partner_id=None, caller=SYSTEM)


@pytest.fixture
def book():
    brand = BrandFactory(code="STM")
    p = AccountFactory(brands=[brand])
    s = AccountFactory(brands=[brand], client=p.client, parent=p)
    postings = [
        (1, lambda: payment_post(account=p, amount="100.00", channel="bank")),
        (2, lambda: debit_post(account=s, amount="30.00", brand=brand)),
        (3, lambda: debit_post(account=p, amount="10.00", brand=brand)),
        (4, lambda: payment_post(account=s, amount="5.00", channel="bank")),
    ]
    for day, post in postings:
        moment = datetime(2026, 3, day, 12, tzinfo=MSK)
        with mock.patch("ledger.services.timezone.now", return_value=moment):
            post()
    return {"p": p, "s": s}


def figures(report):
    h, t = report.header, report.totals
    return (h["opening"], t["credit"], t["debit"], h["closing"])


def test_payer_statement_reads_balances_after(book):
    report = statement(STAFF, book["p"], date(2026, 3, 2), date(2026, 3, 3))
    assert figures(report) == (D("100.00"), D("0.00"), D("40.00"), D("60.00"))
    assert [(r["kind"], r["amount"], r["balance_after"]) for r in report.rows] == [
        ("debit", D("-30.00"), D("70.00")),
        ("debit", D("-10.00"), D("60.00")),
    ]
    assert report.chart["series"][0]["data"] == ["70.00", "60.00"]
    assert (
        statement(STAFF, book["p"], date(2026, 3, 2), date(2026, 3, 3), chart=False).chart is None
    )
    # A period with no movement: opening = closing = the balance before it.
    empty = statement(STAFF, book["p"], date(2026, 3, 10), date(2026, 3, 11))
    assert figures(empty) == (D("65.00"), D("0.00"), D("0.00"), D("65.00")) and empty.rows == []


def test_sub_account_statement_sums_its_own_postings(book):
    report = statement(STAFF, book["s"], date(2026, 3, 3), date(2026, 3, 4))
    # Before 3 March s had drawn 30 on its payer; then only its own payment of 5.
    assert figures(report) == (D("-30.00"), D("5.00"), D("0.00"), D("-25.00"))
    assert [(r["kind"], r["amount"], r["balance_after"]) for r in report.rows] == [
        ("payment", D("5.00"), None)
    ]


def test_system_account_statement_closes_on_the_sum(book):
    clearing = Account.objects.get(pk=system_account_id("clearing", "RUB", channel="bank"))
    report = statement(STAFF, clearing, date(2026, 3, 4), date(2026, 3, 4))
    # The bank clearing account is debited by each payment: -100 before, -5 on 4 March.
    assert figures(report) == (D("-100.00"), D("0.00"), D("5.00"), D("-105.00"))


@pytest.mark.parametrize("zone", ["Europe/Moscow", "UTC", "America/Sao_Paulo"])
def test_statement_entry_renders_as_drf_fields_do(zone):
    row = {
        "created_at": datetime(2026, 3, 5, 9, 30, 15, 120000, tzinfo=ZoneInfo("UTC")),
        "kind": "debit",
        "amount": D("-1250.50"),
        "balance_after": D("7.00"),
        "memo": "=SUM(A1)",
    }
    with timezone.override(zone):
        fast = StatementEntrySerializer(row).data
        expected = {
            "created_at": serializers.DateTimeField().to_representation(row["created_at"]),
            "kind": "debit",
            "amount": serializers.DecimalField(18, 2).to_representation(row["amount"]),
            "balance_after": "7.00",
            "memo": "=SUM(A1)",
        }
    assert fast == expected
    assert fast["created_at"].endswith(
        "Z" if zone == "UTC" else ("+03:00", "-03:00")[zone != "Europe/Moscow"]
    )
    assert StatementEntrySerializer({**row, "balance_after": None}).data["balance_after"] is None


def test_xlsx_export_keeps_types_and_formats(tmp_path):
    report = Report(
        name="statement",
        title="t",
        columns=[
            Column("at", "At", "datetime"),
            Column("day", "Day", "date"),
            Column("amount", "Amount", "money"),
            Column("count", "Count", "int"),
            Column("memo", "Memo"),
        ],
        rows=iter(
            [
                {
                    "at": datetime(2026, 3, 5, 21, 30, tzinfo=ZoneInfo("UTC")),
                    "day": date(2026, 3, 6),
                    "amount": D("-1250.50"),
                    "count": 3,
                    "memo": "=HYPERLINK(1)",
                },
                {"at": None, "day": None, "amount": D("0.10"), "count": 0, "memo": "-12.50"},
            ]
        ),
    )
    path = tmp_path / "r.xlsx"
    assert write_xlsx(report, str(path)) == 2
    sheet = load_workbook(path).active
    assert [c.value for c in sheet[1]] == ["At", "Day", "Amount", "Count", "Memo"]
    first, second = sheet[2], sheet[3]
    # 21:30 UTC is 00:30 the next day in Moscow, the operator's time zone.
    assert first[0].value == datetime(2026, 3, 6, 0, 30)
    assert first[0].number_format == "yyyy-mm-dd hh:mm:ss"
    assert (first[1].value, first[1].number_format) == (datetime(2026, 3, 6), "yyyy-mm-dd")
    assert (first[2].value, first[2].number_format) == (-1250.5, "#,##0.00")
    assert (first[3].value, first[4].value) == (3, "'=HYPERLINK(1)")  # a formula is quoted
    assert first[4].data_type == "s"
    assert [c.value for c in second] == [None, None, 0.1, 0, "-12.50"]  # a number stays text
    assert second[4].data_type == "s"


# The API's statement JSON, byte for byte: DRF's compact separators, keys in the
# serializer's order, amounts as two-decimal strings, timestamps ISO 8601 in the current
# time zone ("Z" for UTC, the fraction only when there is one), memos escaped as
# json.dumps(ensure_ascii=False) escapes them (U+2028/U+2029 as \u escapes, as DRF does).
MEMO = 'Pay "No 5" \\ Ünïcode\nline\ttab\x01\u2028\u2029 end'
MEMO_JSON = r'"Pay \"No 5\" \\ Ünïcode\nline\ttab\u0001\u2028\u2029 end"'


@pytest.fixture
def pinned():
    brand = BrandFactory(code="PIN")
    p = AccountFactory(brands=[brand])
    s = AccountFactory(brands=[brand], client=p.client, parent=p)
    postings = [
        (datetime(2026, 3, 1, 12, tzinfo=MSK), lambda: payment_post(account=p, amount="100.00")),
        (
            datetime(2026, 3, 2, 9, 30, 15, 120000, tzinfo=MSK),
            lambda: debit_post(account=s, amount="0.50", brand=brand, memo=MEMO),
        ),
        (
            datetime(2026, 3, 3, 2, 0, 0, 1, tzinfo=MSK),  # 2 March 23:00 UTC
            lambda: accrual_post(account=p, amount="1234567.89", brand=brand),
        ),
        (
            datetime(2026, 3, 3, 23, 59, 59, 999999, tzinfo=MSK),
            lambda: payment_post(account=p, amount="0.01", channel="card", memo="x"),
        ),
    ]
    for moment, post in postings:
        with mock.patch("ledger.services.timezone.now", return_value=moment):
            post()
    user = UserFactory(is_staff=True, is_superuser=True)
    user.save()  # the factory sets the password without saving; sessions check its hash
    client = APIClient()
    client.force_login(user)
    return {"p": p, "s": s, "client": client}


def test_statement_json_is_pinned_byte_for_byte(pinned):
    p, s, client = pinned["p"], pinned["s"], pinned["client"]
    r = client.get(f"/api/v1/reports/statement/?account={p.pk}&from=2026-03-02&to=2026-03-03")
    assert r.status_code == 200 and r["Content-Type"] == "application/json"
    assert (
        r.content
        == (
            f'{{"account":{p.pk},"number":"{p.number}","currency":"RUB","opening":"100.00",'
            '"credit":"0.01","debit":"1234568.39","closing":"-1234468.38","entries":['
            '{"created_at":"2026-03-02T09:30:15.120000+03:00","kind":"debit","amount":"-0.50",'
            f'"balance_after":"99.50","memo":{MEMO_JSON}}},'
            '{"created_at":"2026-03-03T02:00:00.000001+03:00","kind":"accrual",'
            '"amount":"-1234567.89","balance_after":"-1234468.39","memo":""},'
            '{"created_at":"2026-03-03T23:59:59.999999+03:00","kind":"payment","amount":"0.01",'
            '"balance_after":"-1234468.38","memo":"x"}]}'
        ).encode()
    )
    # In UTC: "Z", and the instants as they are; a day with no movement.
    with timezone.override("UTC"):
        r = client.get(f"/api/v1/reports/statement/?account={p.pk}&from=2026-03-01&to=2026-03-01")
    assert (
        r.content
        == (
            f'{{"account":{p.pk},"number":"{p.number}","currency":"RUB","opening":"0.00",'
            '"credit":"100.00","debit":"0.00","closing":"100.00","entries":['
            '{"created_at":"2026-03-01T09:00:00Z","kind":"payment","amount":"100.00",'
            '"balance_after":"100.00","memo":""}]}'
        ).encode()
    )
    r = client.get(f"/api/v1/reports/statement/?account={p.pk}&from=2026-03-10&to=2026-03-10")
    assert (
        r.content
        == (
            f'{{"account":{p.pk},"number":"{p.number}","currency":"RUB","opening":"-1234468.38",'
            '"credit":"0.00","debit":"0.00","closing":"-1234468.38","entries":[]}'
        ).encode()
    )
    # DRF's indent parameter of Accept still indents (DRF renders that one).
    r = client.get(
        f"/api/v1/reports/statement/?account={p.pk}&from=2026-03-10&to=2026-03-10",
        HTTP_ACCEPT="application/json; indent=2",
    )
    assert r.content.startswith(f'{{\n  "account": {p.pk},\n  "number": '.encode())
    # A sub-account: no balance after, the opening and closing are sums.
    r = client.get(f"/api/v1/reports/statement/?account={s.pk}&from=2026-03-02&to=2026-03-02")
    assert (
        r.content
        == (
            f'{{"account":{s.pk},"number":"{s.number}","currency":"RUB","opening":"0.00",'
            '"credit":"0.00","debit":"0.50","closing":"-0.50","entries":['
            '{"created_at":"2026-03-02T09:30:15.120000+03:00","kind":"debit","amount":"-0.50",'
            f'"balance_after":null,"memo":{MEMO_JSON}}}]}}'
        ).encode()
    )


@pytest.mark.parametrize(
    "zone", ["Europe/Moscow", "UTC", "Europe/London", "America/Sao_Paulo", UTC]
)
def test_statement_json_is_the_serializers_json_rendered_by_drf(pinned, zone):
    """The payer's JSON (orjson from the movements as text) is byte for byte what the
    serializer and DRF's renderer make of ``statement()``, in any time zone (London: "Z"
    in winter, "+01:00" in summer; a fixed ``timezone.utc`` goes through DRF itself)."""
    p = pinned["p"]
    with mock.patch("ledger.services.timezone.now", return_value=datetime(2026, 7, 1, tzinfo=MSK)):
        payment_post(account=p, amount="7.10", memo="summer")
    cases = [(p, date(2026, 3, 1), date(2026, 7, 31)), (p, date(2026, 3, 4), date(2026, 3, 5))]
    cases.append((pinned["s"], date(2026, 3, 1), date(2026, 3, 31)))
    bodies = []
    with timezone.override(zone):
        for account, first, last in cases:
            drf = JSONRenderer().render(
                statement_data(account, statement(STAFF, account, first, last, chart=False))
            )
            bodies.append(statement_json(STAFF, account, first, last))
            assert bodies[-1] == drf
    assert b'"memo":"summer"' in bodies[0] and MEMO_JSON.encode() in bodies[0]


def test_payer_stream_only_for_a_payer_read_whole(pinned):
    found = payer_stream(STAFF, pinned["p"], date(2026, 3, 2), date(2026, 3, 3))
    rows = [row for chunk in found.chunks for row in chunk]
    # Opening, credit, debit, closing (the last movement's balance after).
    assert (found.opening, *movement_sums([row[2] for row in rows]), D(rows[-1][3])) == (
        D("100.00"),
        D("0.01"),
        D("1234568.39"),
        D("-1234468.38"),
    )
    assert [row[1:4] for row in rows] == [
        ("debit", "-0.50", "99.50"),
        ("accrual", "-1234567.89", "-1234468.39"),
        ("payment", "0.01", "-1234468.38"),
    ]
    assert payer_stream(STAFF, pinned["s"], date(2026, 3, 2), date(2026, 3, 3)) is None
    clearing = Account.objects.get(pk=system_account_id("clearing", "RUB", channel="bank"))
    assert payer_stream(STAFF, clearing, date(2026, 3, 2), date(2026, 3, 3)) is None
