"""The ledger operations of suspense: money received for no known account, and its way out.

They are ledger items (``ledger.services.operations.Operation``) planned and
written by the ledger like any other, so the ledger stays the one writer:

* ``SuspenseReceiptItem``: a payment (``kind=payment``) that credits the
  suspense system account and debits the channel's clearing account. No client
  account is touched, so nothing is locked and no invoice is allocated.
* ``SuspenseAssignItem``: a transfer from the suspense system account to a
  client account; it raises the payer's balance and is allocated to its open
  invoices like money coming in (``invoicing`` listens to transfers).
* ``SuspenseReturnItem``: a refund from suspense to refunds payable (the money
  goes back to the payer through the agent).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from accounts.models import Account
from ledger.models import TransactionKind
from ledger.services import (
    Leg,
    Operation,
    Posting,
    apply_to_balance,
    chain_of,
    check_currency,
    check_status,
    money,
)
from ledger.services.operations import Context, Plan
from ledger.services.writer import header


@dataclass(slots=True, kw_only=True)
class SuspenseReceiptItem(Operation):
    operation: ClassVar[str] = "suspense_receipt"
    amount: Any
    currency: str
    channel: str = Account.Channel.AGENT
    external_id: str = ""
    memo: str = ""
    metadata: dict[str, Any] | None = None
    idempotency_key: str | None = None

    def prepare(self, caller: Any, now: Any) -> None:
        self.amount = money(self.amount, self.currency)

    def request(self) -> dict[str, Any]:
        return {
            "amount": self.amount,
            "currency": self.currency,
            "channel": self.channel,
            "external_id": self.external_id,
        }

    def account_ids(self) -> tuple[int, ...]:
        return ()

    def plan(self, ctx: Context) -> Plan:
        suspense = ctx.system(Account.Kind.SUSPENSE, self.currency)
        clearing = ctx.system(Account.Kind.CLEARING, self.currency, channel=self.channel)
        head = header(
            kind=TransactionKind.PAYMENT,
            caller=ctx.caller,
            account_id=suspense,
            amount=self.amount,
            currency=self.currency,
            channel=self.channel,
            external_id=self.external_id,
            memo=self.memo,
            metadata=self.metadata or {},
        )
        legs = [Leg(suspense, self.amount), Leg(clearing, -self.amount)]
        return Plan(posting=Posting(head, legs, ctx.now))


@dataclass(slots=True, kw_only=True)
class SuspenseAssignItem(Operation):
    operation: ClassVar[str] = "suspense_assign"
    suspense_item: int
    account_id: int
    amount: Decimal
    currency: str
    memo: str = ""
    metadata: dict[str, Any] | None = None
    idempotency_key: str | None = None

    def request(self) -> dict[str, Any]:
        return {"suspense": self.suspense_item, "account": self.account_id}

    def account_ids(self) -> tuple[int, ...]:
        return (self.account_id,)

    def plan(self, ctx: Context) -> Plan:
        chain = chain_of(ctx.locked, self.account_id)
        named, payer = chain[0], chain[-1]
        check_currency(named, self.currency, self.amount)
        check_status(chain, allow_blocked=True)
        suspense = ctx.system(Account.Kind.SUSPENSE, self.currency)
        after = apply_to_balance(payer, self.amount, ctx.now)
        head = header(
            kind=TransactionKind.TRANSFER,
            caller=ctx.caller,
            account_id=suspense,
            counter_account_id=self.account_id,
            amount=self.amount,
            currency=self.currency,
            memo=self.memo,
            metadata=self.metadata or {},
        )
        sub = named.id if named.id != payer.id else None
        legs = [Leg(suspense, -self.amount), Leg(payer.id, self.amount, sub, after)]
        return Plan(posting=Posting(head, legs, ctx.now))


@dataclass(slots=True, kw_only=True)
class SuspenseReturnItem(Operation):
    operation: ClassVar[str] = "suspense_return"
    suspense_item: int
    amount: Decimal
    currency: str
    reason: str = ""
    channel: str = Account.Channel.AGENT
    memo: str = ""
    metadata: dict[str, Any] | None = None
    idempotency_key: str | None = None

    def request(self) -> dict[str, Any]:
        return {"suspense": self.suspense_item, "reason": self.reason}

    def account_ids(self) -> tuple[int, ...]:
        return ()

    def plan(self, ctx: Context) -> Plan:
        suspense = ctx.system(Account.Kind.SUSPENSE, self.currency)
        refunds = ctx.system(Account.Kind.REFUNDS, self.currency, channel=self.channel)
        head = header(
            kind=TransactionKind.REFUND,
            caller=ctx.caller,
            account_id=suspense,
            amount=self.amount,
            currency=self.currency,
            channel=self.channel,
            memo=self.memo,
            metadata=self.metadata or {},
        )
        legs = [Leg(suspense, -self.amount), Leg(refunds, self.amount)]
        return Plan(posting=Posting(head, legs, ctx.now))
