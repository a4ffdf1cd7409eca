"""Writes for clients and accounts: creation, limits, sub-account links, status.

Account rows are also locked by ledger postings; every service here that
changes an account takes the same row lock (``select_for_update``) so that a
status change or a limit change serialises with postings on that account.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from accounts.exceptions import (
    AccountChainLoop,
    AccountHasFunds,
    BlockedByStaff,
    InvalidAccountStructure,
    InvalidStatusTransition,
    PermissionDenied,
)
from accounts.models import Account, Client, PartnerClient
from accounts.signals import account_status_changed
from brands.models import Brand
from core.audit.context import actor_from
from core.validators import account_number_from_sequence

NUMBER_SEQUENCE = "accounts_account_number_seq"

# Allowed status moves: {from: {to, ...}}. Closed is final.
STATUS_TRANSITIONS: dict[str, set[str]] = {
    Account.Status.OPEN: {Account.Status.BLOCKED, Account.Status.CLOSED},
    Account.Status.BLOCKED: {Account.Status.OPEN, Account.Status.CLOSED},
    Account.Status.CLOSED: set(),
}

CLIENT_FIELDS = {
    "kind",
    "name",
    "legal_name",
    "tax_id",
    "kpp",
    "ogrn",
    "email",
    "phone",
    "address",
    "external_ref",
    "status",
}
LIMIT_FIELDS = {
    "credit_limit",
    "credit_period_days",
    "credit_expires_at",
    "write_off_limit_transaction",
    "write_off_limit_day",
    "write_off_limit_month",
}


def account_numbers_allocate(count: int) -> list[str]:
    """Take ``count`` fresh account numbers (with check digits) from the database sequence."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(%s) FROM generate_series(1, %s)", [NUMBER_SEQUENCE, count])
        return [account_number_from_sequence(row[0]) for row in cursor.fetchall()]


@transaction.atomic
def client_create(*, created_by_partner_id: int | None = None, **fields: Any) -> Client:
    """Create a client after full model validation (INN checksum, kind/tax id match).

    A client a partner creates is linked to it (``PartnerClient``), so the
    partner sees it before it has accounts.
    """
    unknown = set(fields) - CLIENT_FIELDS
    if unknown:
        raise TypeError(f"Unknown client fields: {sorted(unknown)}")
    client = Client(**fields)
    client.full_clean()
    client.save()
    if created_by_partner_id is not None:
        PartnerClient.objects.create(partner_id=created_by_partner_id, client=client)
    return client


@transaction.atomic
def client_update(*, client: Client, **fields: Any) -> Client:
    unknown = set(fields) - CLIENT_FIELDS
    if unknown:
        raise TypeError(f"Unknown client fields: {sorted(unknown)}")
    for name, value in fields.items():
        setattr(client, name, value)
    client.full_clean()
    client.save(update_fields=[*fields, "updated_at"])
    return client


def _validate_limits(account: Account) -> None:
    if account.parent_id is not None and (
        account.credit_limit or account.credit_period_days is not None or account.credit_expires_at
    ):
        raise InvalidAccountStructure(
            "A sub-account draws on its payer's funds and carries no credit terms of its own.",
            field="credit_limit",
        )


def _subtree_levels(account: Account) -> int:
    """How many levels of sub-accounts hang below ``account`` (0 for a leaf)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH RECURSIVE below(id, level) AS ("
            " SELECT id, 0 FROM accounts_account WHERE id = %s"
            " UNION ALL"
            " SELECT a.id, b.level + 1 FROM accounts_account a JOIN below b ON a.parent_id = b.id"
            " WHERE b.level < %s"
            ") SELECT MAX(level) FROM below",
            [account.pk, settings.BILLING_MAX_ACCOUNT_DEPTH],
        )
        return cursor.fetchone()[0] or 0


# The accounts and every ancestor up to their root payers (UNION: ends even on a loop).
_CHAINS_SQL = """
WITH RECURSIVE chain(id, parent_id) AS (
    SELECT id, parent_id FROM accounts_account WHERE id = ANY(%s::bigint[])
  UNION
    SELECT p.id, p.parent_id FROM chain c CROSS JOIN LATERAL (
        SELECT id, parent_id FROM accounts_account WHERE id = c.parent_id LIMIT 1
    ) p
)
SELECT id FROM chain
"""
LOCK_ATTEMPTS = 5


class _ChainChanged(Exception):
    """A parent link on a chain changed while its rows were being locked."""


def _lock_chains(account_ids: Iterable[int]) -> dict[int, Account]:
    """Lock the accounts and every account above them, up to their root payers.

    One statement, ``FOR UPDATE`` in primary-key order (the order ledger postings
    lock in, so neither deadlocks the other). A chain read before the locks were
    granted may have changed meanwhile (a link committed by the transaction we
    waited for): then the savepoint is rolled back, releasing the locks, and the
    chains are read and locked again, until every locked account's payer is locked too.
    """
    ids = sorted(set(account_ids))
    for _attempt in range(LOCK_ATTEMPTS):
        try:
            with transaction.atomic():
                locked = {
                    a.pk: a
                    for a in Account.objects.select_for_update()
                    .filter(pk__in=RawSQL(_CHAINS_SQL, [ids]))
                    .order_by("pk")
                }
                if any(
                    a.parent_id is not None and a.parent_id not in locked for a in locked.values()
                ):
                    raise _ChainChanged
                return locked
        except _ChainChanged:
            continue
    raise InvalidAccountStructure(
        "The account structure kept changing while it was being checked; try again.",
        field="parent",
    )


def _chain_above(parent: Account, locked: dict[int, Account]) -> list[Account]:
    """``parent`` and its payers up to the root, from locked rows; a loop raises."""
    chain = [parent]
    seen = {parent.pk}
    while chain[-1].parent_id is not None:
        if chain[-1].parent_id in seen:
            raise AccountChainLoop(account=parent.number)
        seen.add(chain[-1].parent_id)
        chain.append(locked[chain[-1].parent_id])
    return chain


def _check_parent(
    account: Account | None, parent: Account, currency: str, locked: dict[int, Account]
) -> None:
    """Refuse a parent that is a system account, of another currency, closed, or a cycle.

    ``locked`` holds the parent's whole chain, locked (``_lock_chains``), so the
    chain cannot change until commit. The depth limit counts the account's own
    sub-accounts too, so that moving a payer with employees under another payer
    cannot push them past the limit.
    """
    if parent.is_system:
        raise InvalidAccountStructure("A system account cannot be a payer.", field="parent")
    if parent.currency != currency:
        raise InvalidAccountStructure(
            "A sub-account has the currency of its payer.", field="parent"
        )
    if parent.status == Account.Status.CLOSED:
        raise InvalidAccountStructure("The payer account is closed.", field="parent")
    chain = _chain_above(parent, locked)
    if account is not None and any(node.pk == account.pk for node in chain):
        raise InvalidAccountStructure("That link would make a cycle.", field="parent")
    depth = 1 + len(chain)
    if account is not None:
        depth += _subtree_levels(account)
    if depth > settings.BILLING_MAX_ACCOUNT_DEPTH:
        raise InvalidAccountStructure(
            f"Sub-accounts nest at most {settings.BILLING_MAX_ACCOUNT_DEPTH} levels.",
            field="parent",
        )


@transaction.atomic
def account_create(
    *,
    client: Client,
    currency: str | None = None,
    brands: Iterable[Brand] = (),
    parent: Account | None = None,
    name: str = "",
    credit_limit: Decimal = Decimal("0.00"),
    credit_period_days: int | None = None,
    credit_expires_at: date | None = None,
    write_off_limit_transaction: Decimal | None = None,
    write_off_limit_day: Decimal | None = None,
    write_off_limit_month: Decimal | None = None,
) -> Account:
    """Open a client account with a fresh check-digit number (a sub-account under ``parent``)."""
    currency = currency or (parent.currency if parent else settings.BILLING_DEFAULT_CURRENCY)
    if parent is not None:
        locked = _lock_chains([parent.pk])
        parent = locked[parent.pk]
        _check_parent(None, parent, currency, locked)
    account = Account(
        number=account_numbers_allocate(1)[0],
        kind=Account.Kind.CLIENT,
        client=client,
        currency=currency,
        parent=parent,
        name=name,
        credit_limit=credit_limit,
        credit_period_days=credit_period_days,
        credit_expires_at=credit_expires_at,
        write_off_limit_transaction=write_off_limit_transaction,
        write_off_limit_day=write_off_limit_day,
        write_off_limit_month=write_off_limit_month,
    )
    _validate_limits(account)
    account.full_clean(exclude=["number"])
    account.save()
    if brands:
        account.brands.set(brands)
    return account


# Foreign keys the bulk paths are handed as saved objects: validating them again would cost
# one query per row. Uniqueness and check constraints are the database's (one pass per call).
_BULK_CLEAN_EXCLUDE = ["number", "client", "parent", "status_changed_by", "brand", "service"]


def client_check(**fields: Any) -> Client:
    """A new client built and validated as ``clients_create_bulk`` validates each one
    (fields, INN checksum), without the database (a ``ValidationError`` otherwise); the
    kind / tax id match is the database's check constraint, at insert."""
    unknown = set(fields) - CLIENT_FIELDS
    if unknown:
        raise TypeError(f"Unknown client fields: {sorted(unknown)}")
    client = Client(**fields)
    client.full_clean(validate_unique=False, validate_constraints=False)
    client._checked_fields = dict(fields)
    return client


def _checked_client(item: dict[str, Any] | Client) -> Client:
    """A client ``client_check`` returned, unchanged since (its fields compared), or one
    checked now."""
    if isinstance(item, Client):
        fields = getattr(item, "_checked_fields", None)
        if fields is None or any(getattr(item, k) != v for k, v in fields.items()):
            raise TypeError("Pass the client's fields, or a client client_check returned.")
        return item
    return client_check(**item)


@transaction.atomic
def clients_create_bulk(*, clients: Sequence[dict[str, Any] | Client]) -> list[Client]:
    """Create many clients in one statement, each validated as ``client_create`` validates
    one (fields, INN checksum, kind / tax id match); any invalid one refuses the whole call.
    An item is a dict of fields or a client ``client_check`` returned (checked once).

    For loads (the demo data, imports): no partner links. Returns the clients with ids.
    """
    objs = [_checked_client(item) for item in clients]
    return Client.objects.bulk_create(objs, batch_size=5000)


def _account_built(spec: dict[str, Any]) -> tuple[Account, list[int]]:
    """An item of ``accounts_create_bulk`` as an unsaved account (no number yet) and its
    brand ids, checked without the database (fields, limits); its payer is checked apart."""
    spec = dict(spec)
    brands = spec.pop("brands", ())
    parent = spec.pop("parent", None)
    currency = spec.pop("currency", None) or (
        parent.currency if parent else settings.BILLING_DEFAULT_CURRENCY
    )
    unknown = set(spec) - LIMIT_FIELDS - {"client", "name"}
    if unknown:
        raise TypeError(f"Unknown account fields: {sorted(unknown)}")
    account = Account(kind=Account.Kind.CLIENT, currency=currency, parent=parent, **spec)
    _validate_limits(account)
    account.full_clean(
        exclude=_BULK_CLEAN_EXCLUDE, validate_unique=False, validate_constraints=False
    )
    return account, [getattr(b, "pk", b) for b in brands]


def _account_state(account: Account) -> tuple[Any, ...]:
    return tuple(getattr(account, f.attname) for f in Account._meta.concrete_fields)


def account_check(**spec: Any) -> Account:
    """The checks ``accounts_create_bulk`` makes of one item (``account_create``'s
    arguments) that need no database: fields, limits (a sub-account carries no credit
    terms of its own); a ``ValidationError`` or ``InvalidAccountStructure`` otherwise. Its
    payer is checked by ``account_parents_check``. Returns the unsaved account, which
    ``accounts_create_bulk`` takes as an item without checking it again (if unchanged)."""
    account, brand_ids = _account_built(spec)
    account._checked = (brand_ids, _account_state(account))
    return account


def account_parents_check(
    pairs: Iterable[tuple[Account, str]],
) -> dict[tuple[int, str], InvalidAccountStructure]:
    """For payers and the currencies of the accounts to open under them, what
    ``account_create`` would refuse, by ``(payer id, currency)``; the payers' chains are
    locked until commit (as ``accounts_create_bulk`` locks them)."""
    pairs = {(parent.pk, currency): parent for parent, currency in pairs}
    if not pairs:
        return {}
    locked = _lock_chains({pk for pk, _currency in pairs})
    refused: dict[tuple[int, str], InvalidAccountStructure] = {}
    for (pk, currency), _parent in pairs.items():
        try:
            _check_parent(None, locked[pk], currency, locked)
        except InvalidAccountStructure as exc:
            refused[(pk, currency)] = exc
    return refused


@transaction.atomic
def accounts_create_bulk(*, accounts: Sequence[dict[str, Any] | Account]) -> list[Account]:
    """Open many client accounts at once, with the rules of ``account_create``.

    Each item takes ``account_create``'s arguments (``client`` a saved client,
    ``brands``, ``parent`` a saved account or None, ``currency``, ``name`` and the
    limits). Numbers come from the sequence in one statement; every distinct parent
    has its chain locked and checked once (``_lock_chains``, ``_check_parent``);
    accounts and their brand links are written with two multi-row inserts. Any
    invalid item refuses the whole call. An item may also be an account ``account_check``
    returned (checked once, not again).
    """
    built: list[tuple[Account, list[int]]] = []
    for item in accounts:
        if isinstance(item, Account):
            checked = getattr(item, "_checked", None)
            if checked is None or _account_state(item) != checked[1]:
                raise TypeError("Pass account_create's arguments, or what account_check returned.")
            built.append((item, checked[0]))
        else:
            built.append(_account_built(item))
    parents = {a.parent_id: a.parent for a, _ids in built if a.parent_id is not None}
    locked = _lock_chains(parents) if parents else {}
    checked_parents: set[tuple[int, str]] = set()
    numbers = iter(account_numbers_allocate(len(built)) if built else [])
    objs: list[Account] = []
    brand_ids: list[list[int]] = []
    for account, ids in built:
        if account.parent_id is not None:
            parent = locked[account.parent_id]
            if (parent.pk, account.currency) not in checked_parents:
                _check_parent(None, parent, account.currency, locked)
                checked_parents.add((parent.pk, account.currency))
            account.parent = parent
        account.number = next(numbers)
        brand_ids.append(ids)
        objs.append(account)
    created = Account.objects.bulk_create(objs, batch_size=5000)
    links = Account.brands.through
    links.objects.bulk_create(
        [
            links(account_id=account.pk, brand_id=brand_id)
            for account, ids in zip(created, brand_ids, strict=True)
            for brand_id in ids
        ],
        batch_size=10000,
    )
    return created


def _apply_changes(account: Account, fields: dict[str, Any]) -> None:
    unknown = set(fields) - LIMIT_FIELDS - {"name"}
    if unknown:
        raise TypeError(f"Unknown account fields: {sorted(unknown)}")
    for name, value in fields.items():
        setattr(account, name, value)
    _validate_limits(account)
    account.full_clean(exclude=["number"])


def account_update_check(*, account: Account, **fields: Any) -> None:
    """Refuse a change of limits or label as ``account_update`` would, without making it
    (a change that waits for approval is checked when it is asked for)."""
    _apply_changes(Account.objects.get(pk=account.pk), fields)


@transaction.atomic
def account_update(
    *, account: Account, brands: Iterable[Brand] | None = None, **fields: Any
) -> Account:
    """Change an account's limits, label or brand links under its row lock."""
    locked = Account.objects.select_for_update().get(pk=account.pk)
    _apply_changes(locked, fields)
    if fields:
        locked.save(update_fields=[*fields, "updated_at"])
    if brands is not None:
        locked.brands.set(brands)
    return locked


@transaction.atomic
def account_set_parent(*, account: Account, parent: Account | None) -> Account:
    """Attach a funds-free account under a payer, or detach it to pay for itself.

    Locks the account, the new parent and every account above either of them (their
    chains up to the root payers) in primary-key order, and checks for a cycle on
    those locked rows (``_lock_chains``). Two links that close a cycle only together
    (X under Y while Y's payer goes under an account below X) both lock the account
    the second one moves, so the second waits for the first, sees its link and is
    refused; checking unlocked chains let both pass.
    """
    locked = _lock_chains([account.pk, *([parent.pk] if parent else [])])
    acc = locked[account.pk]
    if acc.is_system:
        raise InvalidAccountStructure("System accounts have no payer.", field="parent")
    if parent is not None:
        new_parent = locked[parent.pk]
        _check_parent(acc, new_parent, acc.currency, locked)
        if acc.balance or acc.held:
            raise AccountHasFunds(
                "Only an account with no balance and no holds can become a sub-account."
            )
    if acc.parent_id != (parent.pk if parent else None) and _subtree_has_active_holds(acc):
        # Their reservations sit on the current payer and count against the
        # current chain's write-off limits; moving now would strand both.
        raise AccountHasFunds(
            "Capture or void the active holds of this account (and its sub-accounts) first.",
            field="parent",
        )
    acc.parent = locked[parent.pk] if parent else None
    _validate_limits(acc)
    acc.save(update_fields=["parent", "updated_at"])
    return acc


def _subtree_has_active_holds(account: Account) -> bool:
    """Whether the account or any account below it has an active hold."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH RECURSIVE subtree(id) AS (
                SELECT %s::bigint
              UNION
                SELECT a.id FROM accounts_account a JOIN subtree s ON a.parent_id = s.id
            )
            SELECT id FROM subtree
            """,
            [account.pk],
        )
        ids = [row[0] for row in cursor.fetchall()]
    return Account.objects.filter(pk__in=ids, holds__status="active").exists()


def _can_change_status(user: Any) -> bool:
    return user is None or user.has_perm("accounts.block_account")


def _caller_ref(changed_by: Any, caller_ref: str | None) -> str:
    if caller_ref:
        return caller_ref
    return f"user:{changed_by.pk}" if getattr(changed_by, "pk", None) else "system"


@actor_from(user="changed_by", ref="caller_ref")  # the audit actor, unless an outer one
@transaction.atomic
def account_set_status(
    *,
    account: Account,
    status: str,
    reason: str = "",
    changed_by: Any = None,
    caller_ref: str | None = None,
) -> Account:
    """Move an account along the status machine (open <-> blocked, either -> closed).

    ``caller_ref`` says who acts (``user:<id>``, ``partner:<id>``,
    ``system:<name>``; default: the user, or ``system``) and is kept with the
    status. A partner may lift only a block that a partner set
    (``blocked_by_staff`` otherwise). Closing needs a zero balance, no active
    holds and no open sub-accounts. Locks the account row; postings waiting on
    it see the new status.
    """
    if not _can_change_status(changed_by):
        raise PermissionDenied("You are not allowed to change account status.")
    actor = _caller_ref(changed_by, caller_ref)
    locked = Account.objects.select_for_update().get(pk=account.pk)
    if locked.is_system:
        raise InvalidStatusTransition("System accounts have no status to change.")
    if status not in STATUS_TRANSITIONS.get(locked.status, set()):
        raise InvalidStatusTransition(
            f"An account cannot go from {locked.status} to {status}.",
            current=locked.status,
            requested=status,
        )
    if status == Account.Status.BLOCKED and not reason.strip():
        raise InvalidStatusTransition("Blocking needs a reason.", field="reason")
    if (
        locked.status == Account.Status.BLOCKED
        and actor.startswith("partner:")
        and not locked.status_changed_by_caller.startswith("partner:")
    ):
        raise BlockedByStaff(account=locked.pk)
    if status == Account.Status.CLOSED:
        open_children = locked.children.filter(~Q(status=Account.Status.CLOSED)).exists()
        # A sub-account's holds reserve its payer's funds (``held`` stays 0 on the
        # sub-account itself), so look for active holds placed for this account too.
        active_holds = locked.holds.filter(status="active").exists()
        if locked.balance or locked.held or open_children or active_holds:
            raise AccountHasFunds(
                balance=str(locked.balance),
                held=str(locked.held),
                open_children=open_children,
                active_holds=active_holds,
            )
    previous = locked.status
    locked.status = status
    locked.status_reason = reason.strip()
    locked.status_changed_at = timezone.now()
    locked.status_changed_by = changed_by if getattr(changed_by, "pk", None) else None
    locked.status_changed_by_caller = actor
    locked.save(
        update_fields=[
            "status",
            "status_reason",
            "status_changed_at",
            "status_changed_by",
            "status_changed_by_caller",
            "updated_at",
        ]
    )
    account_status_changed.send(
        sender=Account, account=locked, previous_status=previous, changed_by=changed_by
    )
    return locked


def account_block(
    *, account: Account, reason: str, blocked_by: Any = None, caller_ref: str | None = None
) -> Account:
    return account_set_status(
        account=account,
        status=Account.Status.BLOCKED,
        reason=reason,
        changed_by=blocked_by,
        caller_ref=caller_ref,
    )


def account_unblock(
    *,
    account: Account,
    unblocked_by: Any = None,
    reason: str = "",
    caller_ref: str | None = None,
) -> Account:
    return account_set_status(
        account=account,
        status=Account.Status.OPEN,
        reason=reason,
        changed_by=unblocked_by,
        caller_ref=caller_ref,
    )


def account_close(*, account: Account, closed_by: Any = None, reason: str = "") -> Account:
    return account_set_status(
        account=account, status=Account.Status.CLOSED, reason=reason, changed_by=closed_by
    )
