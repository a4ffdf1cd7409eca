"""The ledger's rules, applied to locked accounts in memory: the only place they live.

Checks (``check_*``, ``credit_refusal``) read ``LockedAccount``s and raise a
``DomainError`` with a stable code; state changes (``apply_to_balance``,
``spend``, ``unspend``, ``reserve``, ``release``) move the running state that
the writer later writes back. Single postings and bulk postings call the same
functions in the same order (through the planners in ``postings.py``,
``charges.py``, ``holds.py`` and ``reversals.py``), so a batch refuses exactly
what one-by-one postings would.

Write-off counters (``spent_day`` / ``spent_month``) live on each account of
the chain and are updated under the same lock. They count discretionary
write-offs (debits, transfers out, hold captures) and active holds; releasing
a hold or reversing a write-off on the same day / month gives the room back.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from accounts.models import Account
from ledger.exceptions import (
    AccountBlocked,
    AccountClosed,
    CreditLimitExpired,
    CreditPeriodExpired,
    CurrencyMismatch,
    DomainError,
    InsufficientFunds,
    InvalidAmount,
    InvalidOperation,
    WriteOffLimitExceeded,
)
from ledger.models import TransactionKind
from ledger.services.locking import LockedAccount
from ledger.services.money import CURRENCY_DECIMALS, MAX_AMOUNT, ZERO, business_date, money

KIND_DISCRETIONARY = {TransactionKind.DEBIT, TransactionKind.TRANSFER, TransactionKind.HOLD_CAPTURE}


class BrandNotLinked(DomainError):
    code = "brand_not_linked"
    default_message = "The account is not linked to this brand."


# --------------------------------------------------------------------------- checks


def check_status(chain: list[LockedAccount], *, allow_blocked: bool) -> None:
    for acc in chain:
        if acc.status == Account.Status.CLOSED:
            raise AccountClosed(f"Account {acc.number} is closed.", account=acc.number)
    if not allow_blocked:
        for acc in chain:
            if acc.status == Account.Status.BLOCKED:
                raise AccountBlocked(f"Account {acc.number} is blocked.", account=acc.number)


def check_currency(
    account: LockedAccount, currency: str | None, amount: Decimal | None = None
) -> None:
    """Refuse another currency than the account's, and fractions the account's currency does
    not have (1.50 JPY) even when the caller named no currency."""
    if currency is not None and currency != account.currency:
        raise CurrencyMismatch(
            f"Account {account.number} is in {account.currency}, not {currency}.",
            account=account.number,
            account_currency=account.currency,
            currency=currency,
        )
    if amount is not None and CURRENCY_DECIMALS.get(account.currency, 2) < 2:
        money(amount, account.currency)


def check_write_off_limits(chain: list[LockedAccount], amount: Decimal, today: date) -> None:
    for acc in chain:
        limits = (
            ("transaction", acc.write_off_limit_transaction, ZERO),
            ("day", acc.write_off_limit_day, acc.spent_on_day(today)),
            ("month", acc.write_off_limit_month, acc.spent_in_month(today)),
        )
        for period, limit, spent in limits:
            if limit is not None and spent + amount > limit:
                raise WriteOffLimitExceeded(
                    f"The {period} write-off limit of account {acc.number} would be exceeded.",
                    account=acc.number,
                    period=period,
                    limit=str(limit),
                    remaining=str(max(limit - spent, ZERO)),
                    requested=str(amount),
                )


def credit_refusal(payer: LockedAccount | Account, now: datetime) -> type[DomainError] | None:
    """Why the payer's credit line cannot be used now, or None when it can."""
    if payer.credit_expires_at is not None and payer.credit_expires_at < business_date(now):
        return CreditLimitExpired
    if (
        payer.credit_period_days is not None
        and payer.negative_since is not None
        and now >= payer.negative_since + timedelta(days=payer.credit_period_days)
    ):
        return CreditPeriodExpired
    return None


def check_funds(payer: LockedAccount, amount: Decimal, now: datetime) -> None:
    """Available funds: own money (balance - held), then the credit line while it is usable."""
    own = payer.balance - payer.held
    if amount <= own:
        return
    if payer.credit_limit > 0:
        refusal = credit_refusal(payer, now)
        if refusal is not None:
            raise refusal(account=payer.number, balance=str(payer.balance))
        if amount <= own + payer.credit_limit:
            return
        available = own + payer.credit_limit
    else:
        available = own
    raise InsufficientFunds(
        f"Account {payer.number} has {max(available, ZERO)} available.",
        account=payer.number,
        available=str(max(available, ZERO)),
        requested=str(amount),
    )


def check_own_funds(payer: LockedAccount, amount: Decimal) -> None:
    """Only the payer's own money (balance - held, never credit) can be refunded."""
    own = payer.balance - payer.held
    if amount > own:
        raise InsufficientFunds(
            "Only the client's own funds can be refunded.",
            account=payer.number,
            available=str(max(own, ZERO)),
            requested=str(amount),
        )


def check_brand(account: LockedAccount, brand_id: int | None, service: Any) -> None:
    """The service (anything with ``pk`` and ``brand_id``) is the brand's; the account is
    linked to the brand."""
    if service is not None and service.brand_id != brand_id:
        raise InvalidOperation(
            "The service belongs to another brand.", service=service.pk, brand=brand_id
        )
    if brand_id is not None and brand_id not in account.brand_ids:
        raise BrandNotLinked(
            f"Account {account.number} is not linked to this brand.",
            account=account.number,
            brand=brand_id,
        )


# --------------------------------------------------------------------------- state changes


def apply_to_balance(payer: LockedAccount, amount: Decimal, now: datetime) -> Decimal:
    """Move the payer's running balance, tracking since when it is negative; return it."""
    payer.balance += amount
    if abs(payer.balance) > MAX_AMOUNT:
        raise InvalidAmount(
            "The balance would leave the range the ledger stores.", account=payer.number
        )
    if payer.balance < 0:
        if payer.negative_since is None:
            payer.negative_since = now
    else:
        payer.negative_since = None
    payer.dirty = True
    return payer.balance


def spend(chain: Iterable[LockedAccount], amount: Decimal, today: date) -> None:
    month = today.replace(day=1)
    for acc in chain:
        acc.spent_day = acc.spent_on_day(today) + amount
        acc.spent_day_on = today
        acc.spent_month = acc.spent_in_month(today) + amount
        acc.spent_month_on = month
        acc.dirty = True


def unspend(chain: Iterable[LockedAccount], amount: Decimal, spent_on: date, today: date) -> None:
    """Give back write-off room for an amount counted on ``spent_on`` (only if still current)."""
    if amount <= 0:
        return
    for acc in chain:
        if spent_on == today and acc.spent_day_on == today:
            acc.spent_day = max(acc.spent_day - amount, ZERO)
            acc.dirty = True
        if spent_on.replace(day=1) == acc.spent_month_on == today.replace(day=1):
            acc.spent_month = max(acc.spent_month - amount, ZERO)
            acc.dirty = True


def reserve(payer: LockedAccount, amount: Decimal) -> None:
    """Hold funds on the payer (``held``) until the hold is captured, voided or expires."""
    payer.held += amount
    payer.dirty = True


def release(
    chain: list[LockedAccount],
    payer: LockedAccount,
    amount: Decimal,
    captured: Decimal,
    reserved_on: date,
    today: date,
) -> None:
    """Take a hold off the payer's ``held``; give back limit room for what was not captured."""
    payer.held -= amount
    payer.dirty = True
    unspend(chain, amount - captured, reserved_on, today)
