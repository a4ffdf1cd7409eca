"""Whole-database invariant checks of the ledger (``manage.py ledger_verify``).

Each check is one set-based query that returns offending rows; an empty
result means the invariant holds. The test suite runs every check after every
test that touched the database.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connections

CHECK_LIMIT = 20

CHECKS: dict[str, str] = {
    "transaction_sums_to_zero": """
        SELECT e.transaction_id, e.currency, SUM(e.amount)
        FROM ledger_entry e GROUP BY e.transaction_id, e.currency
        HAVING SUM(e.amount) <> 0
    """,
    "transaction_has_two_entries": """
        SELECT t.id, COUNT(e.id) FROM ledger_transaction t
        LEFT JOIN ledger_entry e ON e.transaction_id = t.id
        GROUP BY t.id HAVING COUNT(e.id) < 2
    """,
    "entry_currency_matches_account": """
        SELECT e.id, e.currency, a.currency FROM ledger_entry e
        JOIN accounts_account a ON a.id = e.account_id
        JOIN ledger_transaction t ON t.id = e.transaction_id
        WHERE e.currency <> a.currency OR e.currency <> t.currency
    """,
    "currency_sums_to_zero": """
        SELECT currency, SUM(amount) FROM ledger_entry GROUP BY currency HAVING SUM(amount) <> 0
    """,
    "client_balance_equals_entries": """
        SELECT a.id, a.number, a.balance, COALESCE(s.total, 0) FROM accounts_account a
        LEFT JOIN (SELECT account_id, SUM(amount) AS total FROM ledger_entry GROUP BY account_id) s
          ON s.account_id = a.id
        WHERE a.kind = 'client' AND a.balance <> COALESCE(s.total, 0)
    """,
    "balance_after_chain": """
        SELECT id, account_id, balance_after, running FROM (
            SELECT e.id, e.account_id, e.balance_after,
                   SUM(e.amount) OVER (PARTITION BY e.account_id ORDER BY e.id) AS running
            FROM ledger_entry e JOIN accounts_account a ON a.id = e.account_id
            WHERE a.kind = 'client'
        ) x WHERE balance_after IS DISTINCT FROM running
    """,
    "system_entries_have_no_balance_after": """
        SELECT e.id FROM ledger_entry e JOIN accounts_account a ON a.id = e.account_id
        WHERE a.kind <> 'client' AND e.balance_after IS NOT NULL
    """,
    "held_equals_active_holds": """
        SELECT a.id, a.number, a.held, COALESCE(h.total, 0) FROM accounts_account a
        LEFT JOIN (SELECT payer_id, SUM(amount) AS total FROM ledger_hold
                   WHERE status = 'active' GROUP BY payer_id) h ON h.payer_id = a.id
        WHERE a.held <> COALESCE(h.total, 0)
    """,
    "captured_holds_have_one_capture": """
        SELECT h.id, h.captured_amount, COALESCE(SUM(t.amount), 0) FROM ledger_hold h
        LEFT JOIN ledger_transaction t ON t.hold_id = h.id AND t.kind = 'hold_capture'
        GROUP BY h.id, h.status, h.captured_amount
        HAVING (h.status = 'captured' AND COUNT(t.id) <> 1)
            OR (h.status <> 'captured' AND COUNT(t.id) <> 0)
            OR h.captured_amount <> COALESCE(SUM(t.amount), 0)
    """,
    "reversal_mirrors_original": """
        SELECT r.id, r.reversal_of_id FROM ledger_transaction r
        WHERE r.reversal_of_id IS NOT NULL AND EXISTS (
            SELECT account_id, COALESCE(subaccount_id, 0), SUM(amount)
            FROM ledger_entry WHERE transaction_id = r.reversal_of_id
            GROUP BY 1, 2
            EXCEPT
            SELECT account_id, COALESCE(subaccount_id, 0), -SUM(amount)
            FROM ledger_entry WHERE transaction_id = r.id
            GROUP BY 1, 2
        )
    """,
    "negative_since_matches_balance": """
        SELECT id, number, balance, negative_since FROM accounts_account
        WHERE kind = 'client' AND ((balance < 0) <> (negative_since IS NOT NULL))
    """,
}


@dataclass(frozen=True)
class Failure:
    check: str
    rows: list[tuple]

    def __str__(self) -> str:
        shown = "\n".join(f"    {row}" for row in self.rows)
        return f"{self.check}: {len(self.rows)} offending row(s) (first {CHECK_LIMIT}):\n{shown}"


def verify_ledger(using: str = "default") -> list[Failure]:
    """Run every check; return the failed ones (empty list: the ledger is consistent)."""
    failures = []
    with connections[using].cursor() as cursor:
        for name, sql in CHECKS.items():
            cursor.execute(f"SELECT * FROM ({sql}) q LIMIT {CHECK_LIMIT}")
            rows = cursor.fetchall()
            if rows:
                failures.append(Failure(name, rows))
    return failures
