"""Payment rules: created and changed by staff (the admin and the API go through here)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction

from accounts.models import Account, Client
from brands.models import Brand
from payments.exceptions import ValidationFailed
from payments.models import PaymentRule

STATUSES = {Account.Status.OPEN.value, Account.Status.BLOCKED.value}


@transaction.atomic
def payment_rule_set(
    *,
    brand: Brand | None = None,
    client: Client | None = None,
    min_amount: Decimal | None = None,
    max_amount: Decimal | None = None,
    allowed_channels: list[str] | None = None,
    allowed_statuses: list[str] | None = None,
    overpayment: str = PaymentRule.Overpayment.ADVANCE,
) -> PaymentRule:
    """The active rule of a brand or a client, replacing the one it had (kept, inactive)."""
    if (brand is None) == (client is None):
        raise ValidationFailed("A rule belongs to a brand or to a client.", brand=["Or client."])
    errors: dict[str, Any] = {}
    channels = list(dict.fromkeys(allowed_channels or []))
    statuses = list(dict.fromkeys(allowed_statuses or []))
    if set(channels) - set(Account.Channel.values):
        errors["allowed_channels"] = [f"Choose from {', '.join(Account.Channel.values)}."]
    if set(statuses) - STATUSES:
        errors["allowed_statuses"] = ["Choose from open, blocked."]
    for name, value in (("min_amount", min_amount), ("max_amount", max_amount)):
        if value is not None and value <= 0:
            errors[name] = ["Positive."]
    if min_amount is not None and max_amount is not None and min_amount > max_amount:
        errors["min_amount"] = ["At most max_amount."]
    if overpayment not in PaymentRule.Overpayment.values:
        errors["overpayment"] = ["advance or refund."]
    if errors:
        raise ValidationFailed("The payment rule is not valid.", **errors)
    current = PaymentRule.objects.select_for_update().filter(
        active=True, **({"brand": brand} if brand is not None else {"client": client})
    )
    for old in current:
        old.active = False
        old.save(update_fields=["active", "updated_at"])
    try:
        with transaction.atomic():
            return PaymentRule.objects.create(
                brand=brand,
                client=client,
                min_amount=min_amount,
                max_amount=max_amount,
                allowed_channels=channels,
                allowed_statuses=statuses,
                overpayment=overpayment,
            )
    except IntegrityError:  # a concurrent rule for the same owner won
        raise ValidationFailed("Another rule was set at the same moment; try again.") from None
