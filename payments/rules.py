"""Payment rules per brand or client, checked at every intake.

Which rules apply to an account: the active rule of its client when there is
one (it replaces the brands'), else the active rules of every brand linked to
the account, all of them (the strictest wins). A payment is refused when any
applicable rule says so, with a stable code and the field it is about:

============================  =========  ==========================================
code                          field      refused because
============================  =========  ==========================================
``amount_below_minimum``      amount     less than the rule's ``min_amount``
``amount_above_maximum``      amount     more than the rule's ``max_amount``
``channel_not_allowed``       channel    the channel is not in ``allowed_channels``
``account_status_not_allowed`` account   the account's status is not allowed
============================  =========  ==========================================

Where it is checked:

* ``POST /api/v1/payments/`` and every ``ledger.services.payment_post``
  (registered with the ledger in ``PaymentsConfig.ready``): ``422`` with the code;
* registry lines (``registry_refusals``, set-based): a refused line goes to
  suspense with reason ``refused_by_rule`` (the money arrived: it is kept until
  staff assign or return it);
* gateway payment intents: refused when created.

Rules are read through a small per-process cache (a few seconds, cleared at
once in the process that changes a rule), so a payment costs no query while no
rule exists at all.

**Overpayment.** After a payment is posted (and allocated to invoices), a rule
with ``overpayment=refund`` refunds the part of it that leaves the payer's own
funds above zero (``overpayment_refund``, a receiver of ``transaction_posted``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from accounts.models import Account
from core.caller import Caller
from core.errors import DomainError

CACHE_SECONDS = 5.0


class PaymentRefused(DomainError):
    """A payment rule refused the payment; ``code`` says which check, ``details`` the field."""

    status = 422
    code = "payment_refused"

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message, **details)
        self.code = code


@dataclass(frozen=True, slots=True)
class Rule:
    pk: int
    brand_id: int | None
    client_id: int | None
    min_amount: Decimal | None
    max_amount: Decimal | None
    allowed_channels: frozenset[str]
    allowed_statuses: frozenset[str]
    overpayment: str

    def refusal(self, amount: Decimal, channel: str | None, status: str) -> PaymentRefused | None:
        if self.min_amount is not None and amount < self.min_amount:
            return PaymentRefused(
                "amount_below_minimum",
                f"A payment is at least {self.min_amount}.",
                field="amount",
                amount=[f"At least {self.min_amount}."],
                rule=self.pk,
            )
        if self.max_amount is not None and amount > self.max_amount:
            return PaymentRefused(
                "amount_above_maximum",
                f"A payment is at most {self.max_amount}.",
                field="amount",
                amount=[f"At most {self.max_amount}."],
                rule=self.pk,
            )
        if channel is not None and self.allowed_channels and channel not in self.allowed_channels:
            return PaymentRefused(
                "channel_not_allowed",
                f"Payments by {channel!r} are not accepted for this account"
                f" (allowed: {', '.join(sorted(self.allowed_channels))}).",
                field="channel",
                channel=["Not allowed for this account."],
                rule=self.pk,
            )
        if self.allowed_statuses and status not in self.allowed_statuses:
            return PaymentRefused(
                "account_status_not_allowed",
                f"This account is {status}: it does not accept payments now.",
                field="account",
                account=[f"The account is {status}."],
                rule=self.pk,
            )
        return None


class _Cache:
    def __init__(self) -> None:
        self.loaded_at = -1e9
        self.by_brand: dict[int, Rule] = {}
        self.by_client: dict[int, Rule] = {}

    def clear(self) -> None:
        self.loaded_at = -1e9

    def rules(self) -> _Cache:
        if time.monotonic() - self.loaded_at > CACHE_SECONDS:
            from payments.models import PaymentRule

            by_brand, by_client = {}, {}
            for row in PaymentRule.objects.filter(active=True):
                rule = Rule(
                    pk=row.pk,
                    brand_id=row.brand_id,
                    client_id=row.client_id,
                    min_amount=row.min_amount,
                    max_amount=row.max_amount,
                    allowed_channels=frozenset(row.allowed_channels),
                    allowed_statuses=frozenset(row.allowed_statuses),
                    overpayment=row.overpayment,
                )
                if row.brand_id is not None:
                    by_brand[row.brand_id] = rule
                else:
                    by_client[row.client_id] = rule
            self.by_brand, self.by_client = by_brand, by_client
            self.loaded_at = time.monotonic()
        return self

    @property
    def empty(self) -> bool:
        return not (self.by_brand or self.by_client)


_cache = _Cache()


def clear_cache(**kwargs: Any) -> None:
    """Forget the cached rules (on commit, so a rolled-back change is not seen)."""
    transaction.on_commit(_cache.clear)
    _cache.clear()


def connect_cache_signals() -> None:
    from payments.models import PaymentRule

    post_save.connect(clear_cache, sender=PaymentRule, dispatch_uid="payments.rules.saved")
    post_delete.connect(clear_cache, sender=PaymentRule, dispatch_uid="payments.rules.deleted")


def _facts(account_ids: Sequence[int]) -> dict[int, tuple[str, int | None, list[int]]]:
    """``{account id: (status, client id, brand ids)}`` in two queries."""
    facts: dict[int, tuple[str, int | None, list[int]]] = {}
    ids = list(set(account_ids))
    for start in range(0, len(ids), 50_000):
        chunk = ids[start : start + 50_000]
        for pk, status, client_id in Account.objects.filter(pk__in=chunk).values_list(
            "pk", "status", "client_id"
        ):
            facts[pk] = (status, client_id, [])
        through = Account.brands.through
        for account_id, brand_id in through.objects.filter(account_id__in=chunk).values_list(
            "account_id", "brand_id"
        ):
            facts[account_id][2].append(brand_id)
    return facts


def rules_for(cache: _Cache, client_id: int | None, brand_ids: Sequence[int]) -> list[Rule]:
    client_rule = cache.by_client.get(client_id) if client_id is not None else None
    if client_rule is not None:
        return [client_rule]
    return [cache.by_brand[b] for b in sorted(brand_ids) if b in cache.by_brand]


def refusals(
    lines: Sequence[tuple[int, Decimal]], channel: str | None
) -> list[PaymentRefused | None]:
    """For each ``(account id, amount)``, the first refusal of its rules, or None."""
    cache = _cache.rules()
    if cache.empty or not lines:
        return [None] * len(lines)
    facts = _facts([account_id for account_id, _ in lines])
    out: list[PaymentRefused | None] = []
    for account_id, amount in lines:
        status, client_id, brand_ids = facts.get(account_id, ("open", None, []))
        found = None
        for rule in rules_for(cache, client_id, brand_ids):
            found = rule.refusal(amount, channel, status)
            if found is not None:
                break
        out.append(found)
    return out


def registry_refusals(lines: Sequence[tuple[int, Decimal]]) -> list[DomainError | None]:
    """Registry lines come through the ``agent`` channel."""
    return refusals(lines, Account.Channel.AGENT)


def payment_check(*, account_id: int, amount: Decimal, channel: str, caller: Caller) -> None:
    """The check the ledger runs for every single payment (registered in ``ready``)."""
    (refusal,) = refusals([(account_id, amount)], channel)
    if refusal is not None:
        raise refusal


def overpayment_policy(account_id: int) -> str:
    """``refund`` when a rule of the account says to refund overpayments, else ``advance``."""
    cache = _cache.rules()
    if cache.empty:
        return "advance"
    _, client_id, brand_ids = _facts([account_id]).get(account_id, ("open", None, []))
    rules = rules_for(cache, client_id, brand_ids)
    return "refund" if any(rule.overpayment == "refund" for rule in rules) else "advance"
