"""The whitelist of the ad-hoc report builder: datasets, and per dataset the dimensions,
measure fields and filter fields a definition may name.

Everything a definition names is looked up here; only these SQL fragments ever reach
a query (values go as parameters). Nothing a user types becomes SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TEXT, DATE, MONEY, INT = "text", "date", "money", "int"


@dataclass(frozen=True)
class Field:
    sql: str
    kind: str
    label: str


@dataclass(frozen=True)
class Dataset:
    label: str
    source: str  # FROM ... JOIN ... (no user input)
    dimensions: dict[str, Field]
    measures: dict[str, Field]  # numeric fields that sum / avg / min / max apply to
    filters: dict[str, Field] = field(default_factory=dict)

    def filterable(self) -> dict[str, Field]:
        return {**self.dimensions, **self.measures, **self.filters}


def _day(column: str) -> str:
    return f"(({column}) AT TIME ZONE %(tz)s)::date"


def _month(column: str) -> str:
    return f"date_trunc('month', ({column}) AT TIME ZONE %(tz)s)::date"


_CATALOGUE = """
  LEFT JOIN brands_brand b ON b.id = t.brand_id
  LEFT JOIN brands_service s ON s.id = t.service_id
"""

DATASETS: dict[str, Dataset] = {
    "entries": Dataset(
        label="Ledger entries",
        source=f"""
  ledger_entry e
  JOIN ledger_transaction t ON t.id = e.transaction_id
  JOIN accounts_account a ON a.id = e.account_id
  LEFT JOIN accounts_client c ON c.id = a.client_id
  {_CATALOGUE}""",
        dimensions={
            "brand": Field("b.code", TEXT, "Brand"),
            "service": Field("s.code", TEXT, "Service"),
            "kind": Field("t.kind", TEXT, "Operation"),
            "channel": Field("t.channel", TEXT, "Channel"),
            "day": Field(_day("e.created_at"), DATE, "Day"),
            "month": Field(_month("e.created_at"), DATE, "Month"),
            "currency": Field("e.currency", TEXT, "Currency"),
            "account": Field("a.number", TEXT, "Account"),
            "account_kind": Field("a.kind", TEXT, "Account kind"),
            "client_kind": Field("c.kind", TEXT, "Client kind"),
            "entry": Field("e.id", INT, "Entry"),
            "transaction": Field("t.id", INT, "Transaction"),
        },
        measures={
            "amount": Field("e.amount", MONEY, "Amount"),
            "credit": Field("GREATEST(e.amount, 0.00)", MONEY, "Credit (in)"),
            "debit": Field("GREATEST(-e.amount, 0.00)", MONEY, "Debit (out)"),
        },
    ),
    "transactions": Dataset(
        label="Ledger transactions",
        source=f"""
  ledger_transaction t
  JOIN accounts_account a ON a.id = t.account_id
  LEFT JOIN accounts_client c ON c.id = a.client_id
  {_CATALOGUE}""",
        dimensions={
            "brand": Field("b.code", TEXT, "Brand"),
            "service": Field("s.code", TEXT, "Service"),
            "kind": Field("t.kind", TEXT, "Operation"),
            "channel": Field("t.channel", TEXT, "Channel"),
            "day": Field(_day("t.created_at"), DATE, "Day"),
            "month": Field(_month("t.created_at"), DATE, "Month"),
            "currency": Field("t.currency", TEXT, "Currency"),
            "subject_type": Field("t.subject_type", TEXT, "Subject type"),
            "client_kind": Field("c.kind", TEXT, "Client kind"),
            "account": Field("a.number", TEXT, "Account"),
        },
        measures={"amount": Field("t.amount", MONEY, "Amount")},
    ),
    "invoices": Dataset(
        label="Invoices",
        source="""
  invoicing_invoice i
  JOIN invoicing_billingperiod p ON p.id = i.period_id
  JOIN brands_brand b ON b.id = i.brand_id
  JOIN accounts_account a ON a.id = i.account_id
  LEFT JOIN accounts_client c ON c.id = a.client_id""",
        dimensions={
            "brand": Field("b.code", TEXT, "Brand"),
            "period": Field("p.code", TEXT, "Period"),
            "status": Field("i.status", TEXT, "Status"),
            "kind": Field("i.kind", TEXT, "Kind"),
            "currency": Field("i.currency", TEXT, "Currency"),
            "month": Field(_month("i.issued_at"), DATE, "Month issued"),
            "client_kind": Field("c.kind", TEXT, "Client kind"),
            "account": Field("a.number", TEXT, "Account"),
        },
        measures={
            "total": Field("i.total", MONEY, "Total"),
            "vat": Field("i.vat", MONEY, "VAT"),
            "paid": Field("i.paid_amount", MONEY, "Paid"),
            "unpaid": Field("(i.total - i.paid_amount)", MONEY, "Unpaid"),
        },
    ),
    "accounts": Dataset(
        label="Accounts",
        source="""
  accounts_account a
  LEFT JOIN accounts_client c ON c.id = a.client_id""",
        dimensions={
            "kind": Field("a.kind", TEXT, "Account kind"),
            "status": Field("a.status", TEXT, "Status"),
            "currency": Field("a.currency", TEXT, "Currency"),
            "client_kind": Field("c.kind", TEXT, "Client kind"),
            "has_payer": Field("(a.parent_id IS NOT NULL)::text", TEXT, "Sub-account"),
            "month_opened": Field(_month("a.created_at"), DATE, "Month opened"),
        },
        measures={
            "balance": Field("a.balance", MONEY, "Balance"),
            "held": Field("a.held", MONEY, "Held"),
            "credit_limit": Field("a.credit_limit", MONEY, "Credit limit"),
        },
        filters={"number": Field("a.number", TEXT, "Account number")},
    ),
}

AGGREGATES = {"sum": "SUM", "avg": "AVG", "min": "MIN", "max": "MAX", "count": "COUNT"}
OPERATORS = {
    "eq": "=",
    "ne": "<>",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "in": "= ANY",
    "not_in": "<> ALL",
}


def catalogue() -> dict:
    """The whitelist as data, for the builder's screen and the API."""
    return {
        name: {
            "label": d.label,
            "dimensions": {k: {"label": f.label, "kind": f.kind} for k, f in d.dimensions.items()},
            "measures": {k: {"label": f.label, "kind": f.kind} for k, f in d.measures.items()},
            "filters": {k: {"label": f.label, "kind": f.kind} for k, f in d.filterable().items()},
            "aggregates": list(AGGREGATES),
            "operators": list(OPERATORS),
        }
        for name, d in DATASETS.items()
    }
