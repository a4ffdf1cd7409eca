"""Reading registry files: both built-in formats, a staff-described layout, and bad files."""

from decimal import Decimal

import pytest

from payments.exceptions import RegistryRefused
from payments.formats import CSV_TOTAL, SBER_TXT, Layout, layout_problems, parse_registry
from tests.payments.conftest import Pay, csv_total, sber_txt

PAYS = [
    Pay("P1", "0000000018", "100.50", commission="1.50"),
    Pay("P2", "0000000026", "2000.00", commission="30.00"),
]


def refusal(layout, data) -> RegistryRefused:
    with pytest.raises(RegistryRefused) as info:
        parse_registry(layout, data)
    assert info.value.code == "registry_refused"
    return info.value


def test_sber_txt_reads_rows_commission_and_control_footer():
    parsed = parse_registry(SBER_TXT, sber_txt(PAYS))
    assert parsed.errors == []
    assert [(r.row, r.payment_id, r.account, r.amount) for r in parsed.rows] == [
        (1, "P1", "0000000018", Decimal("100.50")),
        (2, "P2", "0000000026", Decimal("2000.00")),
    ]
    assert [r.commission for r in parsed.rows] == [Decimal("1.50"), Decimal("30.00")]
    assert parsed.rows[0].payer == "Иванов Иван Иванович"
    assert parsed.rows[0].paid_at.isoformat().startswith("2026-12-01T10:15:00")
    assert (parsed.control_count, parsed.control_total) == (2, Decimal("2100.50"))
    assert parsed.control_commission == Decimal("31.50")


def test_csv_total_reads_control_line_first_then_header():
    parsed = parse_registry(CSV_TOTAL, csv_total(PAYS))
    assert parsed.errors == []
    assert [(r.row, r.payment_id, r.amount) for r in parsed.rows] == [
        (3, "P1", Decimal("100.50")),
        (4, "P2", Decimal("2000.00")),
    ]
    assert parsed.rows[0].paid_at.utcoffset().total_seconds() == 3 * 3600
    assert parsed.rows[1].period == "2026-11"
    assert parsed.has_commission is False


def test_utf8_byte_order_mark_is_tolerated():
    parsed = parse_registry(CSV_TOTAL, b"\xef\xbb\xbf" + csv_total(PAYS))
    assert len(parsed.rows) == 2


@pytest.mark.parametrize(
    "layout, data, reason",
    [
        (SBER_TXT, sber_txt(PAYS).decode("cp1251").encode("utf-8"), "wrong_encoding"),
        (CSV_TOTAL, csv_total(PAYS).decode("utf-8").encode("cp1251"), "wrong_encoding"),
        (SBER_TXT, sber_txt(PAYS, count=3), "control_count_mismatch"),
        (SBER_TXT, sber_txt(PAYS, total="2100.51"), "control_total_mismatch"),
        (SBER_TXT, sber_txt(PAYS, commission="31.00"), "control_commission_mismatch"),
        (CSV_TOTAL, csv_total(PAYS, total="1.00"), "control_total_mismatch"),
        (CSV_TOTAL, csv_total(PAYS, count=1), "control_count_mismatch"),
        (CSV_TOTAL, b"", "empty_file"),
        (CSV_TOTAL, b"#TOTAL,0,0\npayment_id,paid_at,account,payer,amount,period\n", "empty_file"),
        (CSV_TOTAL, csv_total(PAYS).split(b"\n", 1)[1], "control_line_missing"),
        (
            CSV_TOTAL,
            b"#TOTAL,two,100\n" + csv_total(PAYS).split(b"\n", 1)[1],
            "control_line_malformed",
        ),
        (CSV_TOTAL, csv_total(PAYS).replace(b"paid_at,account", b"account,paid_at"), "unparseable"),
        (SBER_TXT, sber_txt(PAYS).rsplit(b"\r\n=", 1)[0] + b"\r\n", "control_line_missing"),
        (CSV_TOTAL, csv_total(PAYS).replace(b"P1", b"P\x001"), "wrong_encoding"),
    ],
)
def test_bad_files_are_refused_with_a_stable_reason(layout, data, reason):
    assert refusal(layout, data).details["reason"] == reason


def test_broken_rows_are_reported_by_line_column_and_code():
    text = csv_total(PAYS).decode()
    text = text.replace("2000.00,", "20O0.00,").replace(
        "P1,2026-12-01T10:15:00+03:00", "P1,yesterday"
    )
    text += "P3,2026-12-01T10:00:00+03:00\n"  # too few columns
    text = text.replace("#TOTAL,2,", "#TOTAL,3,")
    parsed = parse_registry(CSV_TOTAL, text.encode())
    assert [(e.row, e.column, e.code) for e in parsed.errors] == [
        (3, "paid_at", "invalid_date"),
        (4, "amount", "invalid_amount"),
        (5, None, "wrong_column_count"),
    ]
    assert parsed.rows == []


@pytest.mark.parametrize("amount", ["0.00", "-5.00", "1.005", "1e3", "NaN"])
def test_amounts_that_are_not_positive_cents_are_row_errors(amount):
    data = csv_total([Pay("P1", "0000000018", "1.00")]).replace(b",1.00,", f",{amount},".encode())
    data = data.replace(b"#TOTAL,1,1.00", b"#TOTAL,1,0")
    parsed = parse_registry(CSV_TOTAL, data)
    assert [(e.column, e.code) for e in parsed.errors] == [("amount", "invalid_amount")]


def test_missing_payment_id_and_account_are_row_errors():
    data = csv_total([Pay("", "", "1.00")])
    parsed = parse_registry(CSV_TOTAL, data)
    assert {(e.column, e.code) for e in parsed.errors} == {
        ("payment_id", "missing_value"),
        ("account", "missing_value"),
    }


TAB_LAYOUT = Layout(
    name="terminal-koi8",
    encoding="koi8-r",
    delimiter="\t",
    decimal_separator=",",
    date_format="%Y%m%d",
    columns={"account": 0, "amount": 1, "payment_id": 2, "paid_at": 3, "payer": 4},
    header_lines=2,
    footer_lines=1,
    control_line="last",
    control_prefix="TOTAL",
    control_columns={"count": 1, "total": 0},
)


def test_a_staff_described_layout_reads_its_files():
    text = (
        "Terminal network registry\nACCOUNT\tSUM\tID\tDATE\tPAYER\n"
        "0000000018\t10,00\tT-1\t20261201\tПетров\n"
        "0000000026\t5,5\tT-2\t20261201\tСидоров\n"
        "end of data\n"
        "TOTAL\t15,50\t2\n"
    )
    assert layout_problems(TAB_LAYOUT) == {}
    parsed = parse_registry(TAB_LAYOUT, text.encode("koi8-r"))
    assert parsed.errors == []
    assert [(r.row, r.payment_id, r.amount, r.payer) for r in parsed.rows] == [
        (3, "T-1", Decimal("10.00"), "Петров"),
        (4, "T-2", Decimal("5.5"), "Сидоров"),
    ]
    assert parsed.rows[0].paid_at.date().isoformat() == "2026-12-01"
    assert (parsed.control_count, parsed.control_total) == (2, Decimal("15.50"))


def test_layout_problems_name_the_field():
    bad = Layout(
        name="bad",
        encoding="no-such-codec",
        delimiter=";;",
        columns={"account": 0, "amount": 0, "colour": 2},
        control_line="first",
        control_columns={"count": 0},
    )
    assert set(layout_problems(bad)) == {"encoding", "delimiter", "columns", "control_columns"}
