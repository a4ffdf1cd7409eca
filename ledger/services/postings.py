"""Money in, out and between clients: payments, transfers, refunds and manual adjustments.

Each kind is an item (its planner, shared with the bulk service) and a service
that posts one item now (``post_one``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

from accounts.models import Account
from brands.models import Brand
from core.caller import SYSTEM, Caller
from core.errors import ValidationFailed
from ledger.exceptions import (
    CurrencyMismatch,
    DuplicatePayment,
    InvalidOperation,
    PermissionDenied,
)
from ledger.models import Transaction, TransactionKind, payer_scope
from ledger.services.checks import run_payment_checks
from ledger.services.locking import PREPARE, LockedAccount, chain_of, hot_cursor
from ledger.services.money import ZERO, business_date, money, pk_of, signed_money
from ledger.services.operations import Context, Operation, Plan, post_one
from ledger.services.rules import (
    apply_to_balance,
    check_currency,
    check_funds,
    check_own_funds,
    check_status,
    check_write_off_limits,
    spend,
)
from ledger.services.sql import DUPLICATE_PAYMENT_SQL, DUPLICATE_PAYMENTS_MANY_SQL
from ledger.services.writer import Leg, Posting, header


def sub_of(named: LockedAccount, payer: LockedAccount) -> int | None:
    """The sub-account an entry on the payer names (None when the payer posted for itself)."""
    return named.id if named.id != payer.id else None


_CHANNELS = frozenset(Account.Channel.values)  # ``.values`` builds a new list on every read


def check_channel(channel: str) -> None:
    if channel not in _CHANNELS:
        raise ValidationFailed(f"Unknown payment channel {channel!r}.", field="channel")


# --------------------------------------------------------------------------- payments


def duplicate_payment(original_id: int | None, external_id: str) -> DuplicatePayment:
    return DuplicatePayment(
        f"A payment with external_id {external_id!r} was already posted"
        + (f" (transaction {original_id})." if original_id is not None else "."),
        transaction=original_id,
        external_id=external_id,
    )


def payments_posted(keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """``{(payer scope, external_id): id}`` of the payments already stored, for the keys
    asked (one statement on the unique index, whatever the number of keys)."""
    keys = set(keys)
    if not keys:
        return {}
    with hot_cursor() as cursor:
        if len(keys) == 1:
            (key,) = keys
            cursor.execute(DUPLICATE_PAYMENT_SQL, list(key), prepare=PREPARE)
            row = cursor.fetchone()
            return {key: row[0]} if row else {}
        # Sorted (a set comes in random order): neighbouring probes share index pages.
        scopes, external_ids = zip(*sorted(keys), strict=True)
        cursor.execute(DUPLICATE_PAYMENTS_MANY_SQL, [list(scopes), list(external_ids)])
        return {(scope, external_id): pk for scope, external_id, pk in cursor.fetchall()}


@dataclass(slots=True, kw_only=True)
class PaymentItem(Operation):
    """Money received for an account (``payment_post``)."""

    operation: ClassVar[str] = "payment"
    account_id: int
    amount: Any
    channel: str = Account.Channel.OTHER
    external_id: str = ""
    memo: str = ""
    currency: str | None = None
    brand_id: int | None = None
    metadata: dict[str, Any] | None = None
    idempotency_key: str | None = None

    def prepare(self, caller: Caller, now: Any) -> None:
        self.amount = money(self.amount, self.currency)
        check_channel(self.channel)

    def request(self) -> dict[str, Any]:
        return {
            "account": self.account_id,
            "amount": self.amount,
            "channel": self.channel,
            "external_id": self.external_id,
            "memo": self.memo,
            "brand": self.brand_id,
            "metadata": self.metadata or {},
        }

    def account_ids(self) -> tuple[int, ...]:
        return (self.account_id,)

    def payer_key(self, caller: Caller) -> tuple[str, str] | None:
        """What the unique index on payments holds for this one (None without an external id)."""
        if not self.external_id:
            return None
        return payer_scope(caller.ref, self.channel), self.external_id

    def duplicate_of(self, caller: Caller) -> DuplicatePayment | None:
        key = self.payer_key(caller)
        original = payments_posted([key]).get(key) if key is not None else None
        return None if original is None else duplicate_payment(original, self.external_id)

    def plan(self, ctx: Context) -> Plan:
        chain = chain_of(ctx.locked, self.account_id)
        named, payer = chain[0], chain[-1]
        check_currency(named, self.currency, self.amount)
        check_status(chain, allow_blocked=True)
        clearing = ctx.system(Account.Kind.CLEARING, named.currency, channel=self.channel)
        after = apply_to_balance(payer, self.amount, ctx.now)
        head = header(
            kind=TransactionKind.PAYMENT,
            caller=ctx.caller,
            account_id=self.account_id,
            amount=self.amount,
            currency=named.currency,
            channel=self.channel,
            external_id=self.external_id,
            memo=self.memo,
            brand_id=self.brand_id,
            metadata=self.metadata or {},
        )
        legs = [
            Leg(payer.id, self.amount, sub_of(named, payer), after),
            Leg(clearing, -self.amount),
        ]
        return Plan(posting=Posting(head, legs, ctx.now))


def payment_post(
    *,
    account: Account | int,
    amount: Any,
    channel: str = Account.Channel.OTHER,
    external_id: str = "",
    memo: str = "",
    currency: str | None = None,
    brand: Brand | int | None = None,
    metadata: dict[str, Any] | None = None,
    caller: Caller = SYSTEM,
    idempotency_key: str | None = None,
) -> Transaction:
    """Money received for an account: credit the client (+), debit the channel's clearing (-).

    Accepted on blocked accounts (a blocked client may still pay its debt),
    refused on closed ones. A payment to a sub-account goes to its root payer.
    Locks the account's chain.

    The checks other apps register (``checks.py``: the payment rules of payment
    intake) run before anything is locked and may refuse it.

    ``external_id`` (the bank's or agent's payment id) is posted once per payer
    scope: the partner for a partner's postings, the channel for staff and the
    system. The database's unique index refuses a second one, concurrent or not,
    and this raises ``DuplicatePayment`` (409 ``duplicate_payment``,
    ``details.transaction`` = the original), unless the same idempotency key and
    request replay the original.
    """
    item = PaymentItem(
        account_id=pk_of(account),
        amount=amount,
        channel=channel,
        external_id=external_id,
        memo=memo,
        currency=currency,
        brand_id=pk_of(brand),
        metadata=metadata,
    )
    item.prepare(caller, None)
    run_payment_checks(
        account_id=item.account_id, amount=item.amount, channel=item.channel, caller=caller
    )
    return post_one(item, caller=caller, idempotency_key=idempotency_key, prepared=True)


# --------------------------------------------------------------------------- transfers


@dataclass(slots=True, kw_only=True)
class TransferItem(Operation):
    """Funds moved between two payers (``transfer_post``)."""

    operation: ClassVar[str] = "transfer"
    from_account_id: int
    to_account_id: int
    amount: Any
    memo: str = ""
    currency: str | None = None
    metadata: dict[str, Any] | None = None
    idempotency_key: str | None = None

    def prepare(self, caller: Caller, now: Any) -> None:
        self.amount = money(self.amount, self.currency)

    def request(self) -> dict[str, Any]:
        return {
            "from": self.from_account_id,
            "to": self.to_account_id,
            "amount": self.amount,
            "memo": self.memo,
        }

    def account_ids(self) -> tuple[int, ...]:
        return (self.from_account_id, self.to_account_id)

    def plan(self, ctx: Context) -> Plan:
        now, amount = ctx.now, self.amount
        today = business_date(ctx.now)
        source = chain_of(ctx.locked, self.from_account_id)
        target = chain_of(ctx.locked, self.to_account_id)
        if source[-1].id == target[-1].id:
            raise InvalidOperation(
                "Both accounts draw on the same payer; nothing would move.",
                from_account=source[0].number,
                to_account=target[0].number,
            )
        check_currency(source[0], self.currency, amount)
        if source[0].currency != target[0].currency:
            raise CurrencyMismatch(from_currency=source[0].currency, to_currency=target[0].currency)
        check_status(source, allow_blocked=False)
        check_status(target, allow_blocked=True)
        check_write_off_limits(source, amount, today)
        check_funds(source[-1], amount, now)
        spend(source, amount, today)
        source_after = apply_to_balance(source[-1], -amount, now)
        target_after = apply_to_balance(target[-1], amount, now)
        head = header(
            kind=TransactionKind.TRANSFER,
            caller=ctx.caller,
            account_id=self.from_account_id,
            counter_account_id=self.to_account_id,
            amount=amount,
            currency=source[0].currency,
            memo=self.memo,
            metadata=self.metadata or {},
        )
        legs = [
            Leg(source[-1].id, -amount, sub_of(source[0], source[-1]), source_after),
            Leg(target[-1].id, amount, sub_of(target[0], target[-1]), target_after),
        ]
        return Plan(posting=Posting(head, legs, now))


def transfer_post(
    *,
    from_account: Account | int,
    to_account: Account | int,
    amount: Any,
    memo: str = "",
    currency: str | None = None,
    metadata: dict[str, Any] | None = None,
    caller: Caller = SYSTEM,
    idempotency_key: str | None = None,
) -> Transaction:
    """Move funds between two payers. The sending side is checked like a debit.

    Both chains are locked in one statement in id order, so A->B and B->A in
    parallel never deadlock. The receiving account may be blocked, not closed.
    """
    item = TransferItem(
        from_account_id=pk_of(from_account),
        to_account_id=pk_of(to_account),
        amount=amount,
        memo=memo,
        currency=currency,
        metadata=metadata,
    )
    return post_one(item, caller=caller, idempotency_key=idempotency_key)


# --------------------------------------------------------------------------- refunds


@dataclass(slots=True, kw_only=True)
class RefundItem(Operation):
    """An overpayment paid back from the payer's own funds (``refund_post``)."""

    operation: ClassVar[str] = "refund"
    account_id: int
    amount: Any
    channel: str = Account.Channel.OTHER
    memo: str = ""
    currency: str | None = None
    metadata: dict[str, Any] | None = None
    idempotency_key: str | None = None

    def prepare(self, caller: Caller, now: Any) -> None:
        self.amount = money(self.amount, self.currency)
        check_channel(self.channel)

    def request(self) -> dict[str, Any]:
        return {
            "account": self.account_id,
            "amount": self.amount,
            "channel": self.channel,
            "memo": self.memo,
        }

    def account_ids(self) -> tuple[int, ...]:
        return (self.account_id,)

    def plan(self, ctx: Context) -> Plan:
        chain = chain_of(ctx.locked, self.account_id)
        payer = chain[-1]
        if len(chain) > 1:
            raise InvalidOperation(
                "Refunds are made from the payer account, not a sub-account.",
                account=chain[0].number,
                payer=payer.number,
            )
        check_currency(payer, self.currency, self.amount)
        check_status(chain, allow_blocked=True)
        check_own_funds(payer, self.amount)
        refunds = ctx.system(Account.Kind.REFUNDS, payer.currency, channel=self.channel)
        after = apply_to_balance(payer, -self.amount, ctx.now)
        head = header(
            kind=TransactionKind.REFUND,
            caller=ctx.caller,
            account_id=self.account_id,
            amount=self.amount,
            currency=payer.currency,
            channel=self.channel,
            memo=self.memo,
            metadata=self.metadata or {},
        )
        legs = [Leg(payer.id, -self.amount, None, after), Leg(refunds, self.amount)]
        return Plan(posting=Posting(head, legs, ctx.now))


def refund_post(
    *,
    account: Account | int,
    amount: Any,
    channel: str = Account.Channel.OTHER,
    memo: str = "",
    currency: str | None = None,
    metadata: dict[str, Any] | None = None,
    caller: Caller = SYSTEM,
    idempotency_key: str | None = None,
) -> Transaction:
    """Pay an overpayment back: debit the client (-), credit refunds payable (+).

    Only the payer's own money can be refunded (balance - held, never credit),
    and only from a payer account. Allowed on blocked accounts.
    """
    item = RefundItem(
        account_id=pk_of(account),
        amount=amount,
        channel=channel,
        memo=memo,
        currency=currency,
        metadata=metadata,
    )
    return post_one(item, caller=caller, idempotency_key=idempotency_key)


# --------------------------------------------------------------------------- adjustments


@dataclass(slots=True, kw_only=True)
class AdjustmentItem(Operation):
    """A manual correction by staff; ``amount`` is signed (``adjustment_post``)."""

    operation: ClassVar[str] = "adjustment"
    account_id: int
    amount: Any
    reason: str
    metadata: dict[str, Any] | None = None
    idempotency_key: str | None = None
    magnitude: Decimal = field(default=ZERO, init=False, repr=False)
    sign: int = field(default=1, init=False, repr=False)

    def prepare(self, caller: Caller, now: Any) -> None:
        user = caller.user
        if user is None or not user.is_staff or not user.has_perm("ledger.post_adjustment"):
            raise PermissionDenied("Only staff with the adjustment permission may adjust balances.")
        if not self.reason or not self.reason.strip():
            raise ValidationFailed("An adjustment needs a reason.", field="reason")
        self.magnitude, self.sign = signed_money(self.amount)

    def request(self) -> dict[str, Any]:
        return {
            "account": self.account_id,
            "amount": self.magnitude * self.sign,
            "reason": self.reason,
        }

    def account_ids(self) -> tuple[int, ...]:
        return (self.account_id,)

    def plan(self, ctx: Context) -> Plan:
        chain = chain_of(ctx.locked, self.account_id)
        named, payer = chain[0], chain[-1]
        check_status(chain, allow_blocked=True)
        check_currency(payer, None, self.magnitude)
        adjustments = ctx.system(Account.Kind.ADJUSTMENTS, payer.currency)
        delta = self.magnitude * self.sign
        after = apply_to_balance(payer, delta, ctx.now)
        head = header(
            kind=TransactionKind.ADJUSTMENT,
            caller=ctx.caller,
            account_id=self.account_id,
            amount=self.magnitude,
            currency=payer.currency,
            memo=self.reason.strip(),
            metadata={
                **(self.metadata or {}),
                "direction": "credit" if self.sign > 0 else "debit",
            },
        )
        legs = [Leg(payer.id, delta, sub_of(named, payer), after), Leg(adjustments, -delta)]
        return Plan(posting=Posting(head, legs, ctx.now))


def adjustment_post(
    *,
    account: Account | int,
    amount: Any,
    reason: str,
    caller: Caller,
    metadata: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> Transaction:
    """A manual correction by staff: ``amount`` is signed (+ credits the client, - debits it).

    Needs a staff user with ``ledger.post_adjustment`` and a reason. Never
    refused for funds (it corrects the books); refused on closed accounts.
    """
    item = AdjustmentItem(
        account_id=pk_of(account), amount=amount, reason=reason, metadata=metadata
    )
    return post_one(item, caller=caller, idempotency_key=idempotency_key)
