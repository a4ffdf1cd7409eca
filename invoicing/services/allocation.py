"""Allocation of money to invoices, called by the receiver of
``ledger.signals.transaction_posted`` inside the posting's transaction, which holds the
lock of the payer's chain (``ledger.lock_accounts``).

**Whose invoices.** A sub-account holds no money: its invoices are debts of the root
payer's balance. So money a payer receives pays the open invoices of its whole tree
(the payer and every sub-account below it), oldest first, those of the account the
posting names (and its own sub-accounts) before the rest.

**Which postings free money for invoices** (``posting_allocate``); for each payer
whose balance a posting raised, by its net amount on that payer:

- money in from outside the tree, a ``payment`` or a ``transfer`` in, pays open
  invoices in full (up to what they owe), even when the payer has other debts: it is
  what the client paid, and the invoices are what it owes for;
- a correction of an earlier charge, a ``credit_note`` not issued by invoicing, an
  ``adjustment`` up, a ``reversal`` of a debit, accrual, hold capture, refund or
  transfer out, pays invoices only as far as they owe more than the payer's debt after
  it: what corrects a debit pays that debit, not the invoices, and an invoice stays
  unpaid exactly as far as the payer is really in debt;
- a credit note issued by invoicing pays the invoice it adjusts first
  (``_apply_credit_note``, called when it is issued), and a reversal of an invoice's
  own accrual (voiding it) frees nothing (the void takes the invoice away).

A reversal that takes money back (of a payment, a transfer in, an adjustment up ...)
takes back what the original allocated, newest invoice first
(``posting_unallocate``; for a payment also credit-balance allocations, see there).

**Locks.** The posting holds the payer's row lock (every service that changes a tree's
invoices locks the tree's payer first: postings, issuing, approval, voiding,
recalculation); the tree's invoices are then locked in id order, the order
``invoices_mark_overdue`` uses, so allocation never deadlocks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from decimal import Decimal

from django.db import connection
from django.db.models import F, Sum
from django.utils import timezone

from accounts.models import Account
from core.db import bound_cursor
from invoicing.models import Invoice, InvoiceAllocation
from invoicing.services.inputs import ZERO, today
from invoicing.services.status import S, derived_status, invoice_status_set
from ledger.models import Transaction, TransactionKind
from ledger.services import posted_payer

_MONEY_IN = {TransactionKind.PAYMENT.value, TransactionKind.TRANSFER.value}
_SOURCE_OF_KIND = {
    TransactionKind.PAYMENT.value: InvoiceAllocation.Source.PAYMENT,
    TransactionKind.CREDIT_NOTE.value: InvoiceAllocation.Source.CREDIT_NOTE,
}

# The payer's tree (the payer and every account below it; UNION ends even on a loop)
# and whether any of it has an open invoice: one query, whatever the posting.
_TREE_SQL = """
WITH RECURSIVE tree(id) AS (
    SELECT %(payer)s::bigint
  UNION
    SELECT a.id FROM accounts_account a JOIN tree t ON a.parent_id = t.id
)
SELECT ARRAY(SELECT id FROM tree ORDER BY id),
       EXISTS (SELECT 1 FROM invoicing_invoice i
               WHERE i.account_id IN (SELECT id FROM tree)
                 AND i.status IN ('issued', 'partly_paid', 'overdue') AND i.total > 0)
"""

_ROOT_SQL = """
WITH RECURSIVE up(id, parent_id, depth) AS (
    SELECT id, parent_id, 0 FROM accounts_account WHERE id = %s
  UNION ALL
    SELECT a.id, a.parent_id, u.depth + 1
    FROM up u CROSS JOIN LATERAL (
        SELECT id, parent_id FROM accounts_account WHERE id = u.parent_id LIMIT 1
    ) a
    WHERE u.depth < 64
)
SELECT id FROM up WHERE parent_id IS NULL
"""


def _tree(payer_id: int) -> tuple[list[int], bool]:
    """The payer's tree and whether it has an open invoice."""
    with connection.cursor() as cursor:
        cursor.execute(_TREE_SQL, {"payer": payer_id})
        ids, has_open = cursor.fetchone()
    return list(ids), has_open


def _root_of(account_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(_ROOT_SQL, [account_id])
        row = cursor.fetchone()
    return row[0] if row else account_id


def _open_invoices_locked(
    account_ids: Sequence[int], named: set[int] | None = None
) -> list[Invoice]:
    """The open invoices of these accounts, locked in id order (deadlock-free), oldest
    issued first; those of the ``named`` accounts before the others."""
    invoices = list(
        Invoice.objects.select_for_update()
        .filter(account_id__in=list(account_ids), status__in=Invoice.OPEN_STATUSES, total__gt=0)
        .order_by("id")
    )
    named = named or set()
    invoices.sort(
        key=lambda inv: (inv.account_id not in named, inv.issued_at or timezone.now(), inv.pk)
    )
    return invoices


def _allocate(
    *,
    account_ids: Sequence[int],
    amount: Decimal,
    source: str,
    transaction_id: int | None,
    first: int | None = None,
    named: set[int] | None = None,
) -> Decimal:
    """Apply ``amount`` to open invoices, oldest first (``first`` before all, then those of
    the ``named`` accounts). Returns the rest."""
    invoices = _open_invoices_locked(account_ids, named)
    if first is not None:
        invoices.sort(key=lambda inv: inv.pk != first)
    allocations: list[InvoiceAllocation] = []
    changed: dict[int, Invoice] = {}
    remaining = _take(invoices, amount, source, transaction_id, today(), allocations, changed)
    _save(changed, allocations)
    return remaining


def _take(
    invoices: Sequence[Invoice],
    amount: Decimal,
    source: str,
    transaction_id: int | None,
    on: date,
    allocations: list[InvoiceAllocation],
    changed: dict[int, Invoice],
) -> Decimal:
    """Pay ``invoices`` in their order with ``amount`` (in memory): adds the allocations and
    the invoices changed; returns the rest."""
    remaining = amount
    for invoice in invoices:
        if remaining <= 0:
            break
        take = min(invoice.total - invoice.paid_amount, remaining)
        if take <= 0:
            continue
        invoice.paid_amount += take
        remaining -= take
        invoice_status_set(
            invoice=invoice,
            status=derived_status(
                invoice.total, invoice.paid_amount, invoice.due_date, on, invoice.status
            ),
            save=False,
        )
        allocations.append(
            InvoiceAllocation(
                invoice=invoice, source=source, transaction_id=transaction_id, amount=take
            )
        )
        changed[invoice.pk] = invoice
    return remaining


def _save(changed: dict[int, Invoice], allocations: list[InvoiceAllocation]) -> None:
    if changed:
        Invoice.objects.bulk_update(list(changed.values()), ["paid_amount", "status"])
        InvoiceAllocation.objects.bulk_create(allocations)


def _payer_credits(txn: Transaction) -> tuple[dict[int, Decimal], dict[int, Decimal]]:
    """Net amount per payer (client entries carry ``balance_after``) and its last balance."""
    net: dict[int, Decimal] = defaultdict(lambda: ZERO)
    after: dict[int, Decimal] = {}
    for entry in sorted(txn.entries.all(), key=lambda e: e.pk or 0):
        if entry.balance_after is None:
            continue
        net[entry.account_id] += entry.amount
        after[entry.account_id] = entry.balance_after
    return net, after


def _frees_nothing(txn: Transaction) -> bool:
    """Postings whose credit invoicing settles itself: an issued credit note (its own
    invoice first, ``_apply_credit_note``) and the reversal of an invoice's accrual (a
    void: the invoice goes away with it). The reversal of an issued credit note takes
    its allocations back like any reversed credit."""
    if txn.subject_type != "invoice":
        return False
    if txn.kind == TransactionKind.CREDIT_NOTE:
        return True
    return (
        txn.kind == TransactionKind.REVERSAL
        and txn.metadata.get("reversed_kind") == TransactionKind.ACCRUAL.value
    )


def _named_subtree(account_id: int, tree: list[int]) -> set[int]:
    """The named account and the accounts below it, within the payer's tree."""
    if account_id not in tree:
        return set()
    below, _ = _tree(account_id)
    return set(below)


def posting_allocate(txn: Transaction) -> None:
    """A posting raised or lowered payers' balances (they are locked): settle invoices.

    See the module docstring for which postings free money and how much.
    """
    if _frees_nothing(txn):
        return
    net, after = _payer_credits(txn)
    if txn.kind == TransactionKind.REVERSAL and any(amount < 0 for amount in net.values()):
        posting_unallocate(txn)
    for payer_id, amount in sorted(net.items()):
        if amount <= 0:
            continue
        tree, has_open = _tree(payer_id)
        if not has_open:
            continue
        budget = amount
        if txn.kind not in _MONEY_IN:
            owed = (
                Invoice.objects.filter(
                    account_id__in=tree, status__in=Invoice.OPEN_STATUSES, total__gt=0
                ).aggregate(owed=Sum(F("total") - F("paid_amount")))["owed"]
                or ZERO
            )
            budget = min(amount, owed - max(-after[payer_id], ZERO))
            if budget <= 0:
                continue
        named = _named_subtree(txn.account_id, tree) if txn.account_id != payer_id else None
        _allocate(
            account_ids=tree,
            amount=budget,
            source=_SOURCE_OF_KIND.get(txn.kind, InvoiceAllocation.Source.CREDIT),
            transaction_id=txn.pk,
            named=named,
        )


# For the named accounts of a bulk posting's payments: each one's root payer (one primary-key
# lookup per level, as the ledger's locking walks chains).
_ROOTS_SQL = """
WITH RECURSIVE up(start, id, parent_id, depth) AS (
    SELECT id, id, parent_id, 0 FROM accounts_account WHERE id = ANY(%(accounts)s::bigint[])
  UNION ALL
    SELECT u.start, a.id, a.parent_id, u.depth + 1
    FROM up u CROSS JOIN LATERAL (
        SELECT id, parent_id FROM accounts_account WHERE id = u.parent_id LIMIT 1
    ) a
    WHERE u.depth < 64
)
SELECT start, id FROM up WHERE parent_id IS NULL
"""

# The trees of these payers whose tree has an open invoice: (root, account id, its parent).
_OPEN_TREE_ACCOUNTS_SQL = """
WITH RECURSIVE tree(root, id, parent_id) AS (
    SELECT p, p, NULL::bigint FROM unnest(%(payers)s::bigint[]) AS p
  UNION
    SELECT t.root, a.id, a.parent_id FROM accounts_account a JOIN tree t ON a.parent_id = t.id
),
open_roots AS (
    SELECT DISTINCT t.root FROM tree t
    JOIN invoicing_invoice i ON i.account_id = t.id
    WHERE i.status IN ('issued', 'partly_paid', 'overdue') AND i.total > 0
)
SELECT t.root, t.id, t.parent_id FROM tree t JOIN open_roots o ON o.root = t.root
"""


def payments_allocate(payments: Sequence[Transaction]) -> None:
    """Allocate many payments of one bulk posting (their payers are locked), set-based: the
    same result as ``posting_allocate`` on each in order, in a few statements whatever
    their number.

    A payment credits its root payer by its amount and pays the open invoices of the
    payer's tree in full, those of its named account's subtree first (see the module
    docstring). The payers are found in one statement, the trees with an open invoice
    in another; their open invoices are locked in one statement in id order and
    paid in memory payment after payment, then written with one UPDATE and one
    INSERT. A payer whose tree has no open invoice costs nothing more.
    """
    if any(txn.kind != TransactionKind.PAYMENT for txn in payments):
        raise ValueError("payments_allocate takes payments only.")
    if not payments:
        return
    # Each named account's root payer: known from the posting itself when this process
    # wrote it (its payer leg), else read (one statement for all of them).
    root_of: dict[int, int] = {}
    unknown: set[int] = set()
    for txn in payments:
        payer = posted_payer(txn)
        if payer is None:
            unknown.add(txn.account_id)
        else:
            root_of[txn.account_id] = payer
    with bound_cursor() as cursor:  # arrays of up to every payer of a registry
        if unknown:
            cursor.execute(_ROOTS_SQL, {"accounts": sorted(unknown)})
            root_of.update(cursor.fetchall())
        cursor.execute(_OPEN_TREE_ACCOUNTS_SQL, {"payers": sorted(set(root_of.values()))})
        tree_rows = cursor.fetchall()
    if not tree_rows:
        return
    trees: dict[int, list[int]] = defaultdict(list)  # root -> its accounts
    children: dict[int, list[int]] = defaultdict(list)
    for root, account_id, parent_id in tree_rows:
        trees[root].append(account_id)
        if account_id != root:
            children[parent_id].append(account_id)
    invoices: dict[int, list[Invoice]] = defaultdict(list)  # root -> open invoices, id order
    tree_root = {account_id: root for root, ids in trees.items() for account_id in ids}
    for invoice in _open_invoices_locked(list(tree_root)):
        invoices[tree_root[invoice.account_id]].append(invoice)
    by_id = {root: sorted(found, key=lambda inv: inv.pk) for root, found in invoices.items()}

    def subtree(account_id: int) -> set[int]:
        found, stack = set(), [account_id]
        while stack:
            current = stack.pop()
            if current not in found:
                found.add(current)
                stack.extend(children.get(current, ()))
        return found

    on, now = today(), timezone.now()
    allocations: list[InvoiceAllocation] = []
    changed: dict[int, Invoice] = {}
    for txn in payments:
        root = root_of.get(txn.account_id, txn.account_id)
        if root not in by_id:
            continue
        named = subtree(txn.account_id) if txn.account_id != root else set()
        ordered = sorted(
            by_id[root],
            key=lambda inv: (inv.account_id not in named, inv.issued_at or now, inv.pk),
        )
        source = InvoiceAllocation.Source.PAYMENT
        _take(ordered, txn.amount, source, txn.pk, on, allocations, changed)
    _save(changed, allocations)


def payment_allocate(txn: Transaction) -> None:
    """A payment was posted (its payer is locked): pay the payer's tree's open invoices."""
    posting_allocate(txn)


def posting_unallocate(reversal: Transaction) -> None:
    """A posting that had paid invoices was reversed: take its allocations back (newest
    invoice first).

    For a payment, when part of the reversed money had reached invoices as a credit
    balance at issue (and so has no trace to this payment), credit-balance allocations
    of the payer's tree are taken back, newest first, until the invoices owe at least
    the payer's debt.
    """
    direct = list(
        InvoiceAllocation.objects.filter(transaction_id=reversal.reversal_of_id)
        .values("invoice_id")
        .annotate(total=Sum("amount"))
    )
    taken_back = sum((row["total"] for row in direct), ZERO)
    remainder = reversal.amount - taken_back
    payment = reversal.metadata.get("reversed_kind") == TransactionKind.PAYMENT.value
    tree: list[int] = []
    if payment and remainder > 0:
        root = _root_of(reversal.account_id)
        tree, _ = _tree(root)
    credit_balance = bool(tree) and (
        InvoiceAllocation.objects.filter(
            invoice__account_id__in=tree, source=InvoiceAllocation.Source.CREDIT_BALANCE
        ).exists()
    )
    if not direct and not credit_balance:
        return
    amounts = {row["invoice_id"]: row["total"] for row in direct if row["total"] > 0}
    if credit_balance:
        payer = Account.objects.only("balance").get(pk=root)
        if payer.balance < 0:
            owed = (
                Invoice.objects.filter(
                    account_id__in=tree, status__in=Invoice.OPEN_STATUSES, total__gt=0
                ).aggregate(owed=Sum(F("total") - F("paid_amount")))["owed"]
                or ZERO
            )
            missing = min(-payer.balance - owed, remainder)
            if missing > 0:
                for allocation in InvoiceAllocation.objects.filter(
                    invoice__account_id__in=tree,
                    source=InvoiceAllocation.Source.CREDIT_BALANCE,
                ).order_by("-invoice_id"):
                    if missing <= 0:
                        break
                    take = min(allocation.amount, missing)
                    amounts[allocation.invoice_id] = amounts.get(allocation.invoice_id, ZERO) + take
                    missing -= take
    invoices = {
        inv.pk: inv
        for inv in Invoice.objects.select_for_update().filter(pk__in=amounts).order_by("pk")
    }
    on = today()
    allocations, changed = [], []
    for invoice_id in sorted(amounts, reverse=True):
        invoice = invoices[invoice_id]
        take = min(amounts[invoice_id], invoice.paid_amount)
        if take <= 0 or invoice.status == S.VOID:
            continue
        invoice.paid_amount -= take
        invoice_status_set(
            invoice=invoice,
            status=derived_status(
                invoice.total, invoice.paid_amount, invoice.due_date, on, invoice.status
            ),
            save=False,
        )
        allocations.append(
            InvoiceAllocation(
                invoice=invoice,
                source=InvoiceAllocation.Source.PAYMENT_REVERSAL
                if payment
                else InvoiceAllocation.Source.CREDIT_REVERSAL,
                transaction_id=reversal.pk,
                amount=-take,
            )
        )
        changed.append(invoice)
    if changed:
        Invoice.objects.bulk_update(changed, ["paid_amount", "status"])
        InvoiceAllocation.objects.bulk_create(allocations)


def _apply_credit_note(credit_note_id: int, transaction_id: int) -> None:
    """A credit note's credit pays the invoice it adjusts first, then other open invoices."""
    note = Invoice.objects.only("account_id", "adjusts_id", "total").get(pk=credit_note_id)
    tree, _ = _tree(_root_of(note.account_id))
    _allocate(
        account_ids=tree,
        named={note.account_id},
        amount=-note.total,
        source=InvoiceAllocation.Source.CREDIT_NOTE,
        transaction_id=transaction_id,
        first=note.adjusts_id,
    )


def payment_reversal_unallocate(reversal: Transaction) -> None:
    """A payment was reversed: take its allocations back (see ``posting_unallocate``)."""
    posting_unallocate(reversal)
