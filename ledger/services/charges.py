"""Charges against a brand's revenue: debits (write-offs), accruals and credit notes.

A debit is discretionary (limits, funds, no blocked account); an accrual
creates debt and is never refused for funds or limits; a credit note is an
accrual's mirror. One item class per kind (``DebitItem``, ``AccrualItem``,
``CreditNoteItem``) with one planner, and one service per kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from accounts.models import Account
from brands.models import Brand, Service
from core.caller import SYSTEM, Caller
from core.errors import ValidationFailed
from ledger.models import Transaction, TransactionKind
from ledger.services.locking import chain_of
from ledger.services.money import business_date, money, pk_of
from ledger.services.operations import Context, Operation, Plan, post_one
from ledger.services.postings import sub_of
from ledger.services.rules import (
    apply_to_balance,
    check_brand,
    check_currency,
    check_funds,
    check_status,
    check_write_off_limits,
    spend,
)
from ledger.services.writer import Leg, Posting, header


@dataclass(slots=True)
class ChargeItem(Operation):
    """A charge of ``kind`` on an account for a brand (and a service of it).

    ``service`` is the resolved service (``pk`` and ``brand_id``): the single
    services pass the one they were given, the bulk service loads them all at once.
    """

    kind: ClassVar[str] = ""
    account_id: int
    amount: Any
    brand_id: int
    service_id: int | None = None
    subject_type: str = ""
    subject_id: str = ""
    memo: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    currency: str | None = None
    service: Any = field(default=None, repr=False, compare=False)

    def prepare(self, caller: Caller, now: Any) -> None:
        if self.brand_id is None:
            raise ValidationFailed("A brand is required.", field="brand")
        self.amount = money(self.amount, self.currency)

    def request(self) -> dict[str, Any]:
        return {
            "account": self.account_id,
            "amount": self.amount,
            "brand": self.brand_id,
            "service": self.service_id,
            "subject_type": self.subject_type,
            "subject_id": self.subject_id,
            "metadata": self.metadata or {},
            "memo": self.memo,
        }

    def account_ids(self) -> tuple[int, ...]:
        return (self.account_id,)

    def plan(self, ctx: Context) -> Plan:
        now, amount = ctx.now, self.amount
        discretionary = self.kind == TransactionKind.DEBIT
        chain = chain_of(ctx.locked, self.account_id)
        named, payer = chain[0], chain[-1]
        check_currency(named, self.currency, amount)
        check_status(chain, allow_blocked=not discretionary)
        check_brand(named, self.brand_id, self.service)
        if discretionary:
            today = business_date(now)
            check_write_off_limits(chain, amount, today)
            check_funds(payer, amount, now)
            spend(chain, amount, today)
        service_id = pk_of(self.service)
        revenue = ctx.system(
            Account.Kind.REVENUE, named.currency, brand_id=self.brand_id, service_id=service_id
        )
        # A credit note is an accrual's mirror: it gives the client back part of a charge.
        delta = amount if self.kind == TransactionKind.CREDIT_NOTE else -amount
        after = apply_to_balance(payer, delta, now)
        head = header(
            kind=self.kind,
            caller=ctx.caller,
            account_id=self.account_id,
            amount=amount,
            currency=named.currency,
            brand_id=self.brand_id,
            service_id=service_id,
            subject_type=self.subject_type,
            subject_id=self.subject_id,
            metadata=self.metadata or {},
            memo=self.memo,
        )
        legs = [Leg(payer.id, delta, sub_of(named, payer), after), Leg(revenue, -delta)]
        return Plan(posting=Posting(head, legs, now))


@dataclass(slots=True)
class DebitItem(ChargeItem):
    """A discretionary write-off (``debit_post``)."""

    kind: ClassVar[str] = TransactionKind.DEBIT
    operation: ClassVar[str] = TransactionKind.DEBIT


@dataclass(slots=True)
class AccrualItem(ChargeItem):
    """One charge that creates debt (an invoice total, a penalty); ``accrual_post``'s meaning."""

    kind: ClassVar[str] = TransactionKind.ACCRUAL
    operation: ClassVar[str] = TransactionKind.ACCRUAL


@dataclass(slots=True)
class CreditNoteItem(ChargeItem):
    """Part of a charge given back (``credit_note_post``)."""

    kind: ClassVar[str] = TransactionKind.CREDIT_NOTE
    operation: ClassVar[str] = TransactionKind.CREDIT_NOTE


def _charge(
    item_class: type[ChargeItem],
    *,
    account: Account | int,
    amount: Any,
    brand: Brand | int,
    service: Service | int | None,
    subject_type: str,
    subject_id: str,
    metadata: dict[str, Any] | None,
    memo: str,
    currency: str | None,
    caller: Caller,
    idempotency_key: str | None,
) -> Transaction:
    item = item_class(
        account_id=pk_of(account),
        amount=amount,
        brand_id=pk_of(brand),
        service_id=pk_of(service),
        subject_type=subject_type,
        subject_id=subject_id,
        memo=memo,
        metadata=metadata or {},
        currency=currency,
    )
    item.prepare(caller, None)
    item.service = (
        Service.objects.only("id", "brand_id").get(pk=service)
        if isinstance(service, int)
        else service
    )
    return post_one(item, caller=caller, idempotency_key=idempotency_key, prepared=True)


def debit_post(
    *,
    account: Account | int,
    amount: Any,
    brand: Brand | int,
    service: Service | int | None = None,
    subject_type: str = "",
    subject_id: str = "",
    metadata: dict[str, Any] | None = None,
    memo: str = "",
    currency: str | None = None,
    caller: Caller = SYSTEM,
    idempotency_key: str | None = None,
) -> Transaction:
    """A discretionary write-off (a food order, a partner charge): debit the client, credit revenue.

    Refused, changing nothing, when any account in the chain is blocked or
    closed, when a write-off limit of any account in the chain would be
    exceeded, or when the root payer's available funds (balance - held +
    usable credit) do not cover it. Locks the account's chain in id order.
    """
    return _charge(
        DebitItem,
        account=account,
        amount=amount,
        brand=brand,
        service=service,
        subject_type=subject_type,
        subject_id=subject_id,
        metadata=metadata,
        memo=memo,
        currency=currency,
        caller=caller,
        idempotency_key=idempotency_key,
    )


def accrual_post(
    *,
    account: Account | int,
    amount: Any,
    brand: Brand | int,
    service: Service | int | None = None,
    subject_type: str = "",
    subject_id: str = "",
    metadata: dict[str, Any] | None = None,
    memo: str = "",
    currency: str | None = None,
    caller: Caller = SYSTEM,
    idempotency_key: str | None = None,
) -> Transaction:
    """A charge that creates debt (invoice, penalty): never refused for funds or limits.

    Allowed on blocked accounts; refused only when the chain has a closed account.
    """
    return _charge(
        AccrualItem,
        account=account,
        amount=amount,
        brand=brand,
        service=service,
        subject_type=subject_type,
        subject_id=subject_id,
        metadata=metadata,
        memo=memo,
        currency=currency,
        caller=caller,
        idempotency_key=idempotency_key,
    )


def credit_note_post(
    *,
    account: Account | int,
    amount: Any,
    brand: Brand | int,
    service: Service | int | None = None,
    subject_type: str = "",
    subject_id: str = "",
    metadata: dict[str, Any] | None = None,
    memo: str = "",
    currency: str | None = None,
    caller: Caller = SYSTEM,
    idempotency_key: str | None = None,
) -> Transaction:
    """Give a client back part of what an accrual charged (an invoice's credit note).

    The mirror of ``accrual_post``: credits the client (+) and debits the
    brand's revenue account for the service (-), so revenue shows what was
    finally billed. Never refused for funds or limits; allowed on blocked
    accounts, refused on closed ones and for a brand the account is not linked
    to. Locks the account's chain.
    """
    return _charge(
        CreditNoteItem,
        account=account,
        amount=amount,
        brand=brand,
        service=service,
        subject_type=subject_type,
        subject_id=subject_id,
        metadata=metadata,
        memo=memo,
        currency=currency,
        caller=caller,
        idempotency_key=idempotency_key,
    )
