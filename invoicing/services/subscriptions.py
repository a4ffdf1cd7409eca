"""Subscriptions: an open client account, linked to the service's brand and in the
tariff's currency, takes a tariff plan over inclusive dates, never overlapping another
subscription of the account to that service (``SubscriptionOverlap``). Ending one
cannot take back billed days.
"""

from __future__ import annotations

from datetime import date, timedelta

from django.db import IntegrityError, transaction

from accounts.models import Account
from brands.models import Service
from invoicing.exceptions import InvoicingValidationError, SubscriptionOverlap
from invoicing.models import Subscription, Tariff
from invoicing.services.inputs import _pk, check_day
from invoicing.services.periods import check_days_open
from ledger import services as ledger
from ledger.exceptions import AccountClosed, CurrencyMismatch


def subscription_create(
    *,
    account: Account | int,
    tariff: Tariff | int,
    starts_on: date,
    ends_on: date | None = None,
    service: Service | int | None = None,
) -> Subscription:
    """Subscribe an account to a tariff plan of a service from ``starts_on``.

    The account must be an open client account linked to the service's brand,
    in the tariff's currency; the days must not overlap another subscription of
    the account to that service, nor a closed period.
    """
    tariff_obj = (
        tariff
        if isinstance(tariff, Tariff)
        else Tariff.objects.select_related("service").get(pk=tariff)
    )
    if service is not None and _pk(service) != tariff_obj.service_id:
        raise InvoicingValidationError(
            "The tariff belongs to another service.", field="tariff", tariff=tariff_obj.pk
        )
    check_day(starts_on, "starts_on")
    check_day(ends_on, "ends_on")
    if ends_on is not None and ends_on < starts_on:
        raise InvoicingValidationError("ends_on is before starts_on.", field="ends_on")
    with transaction.atomic():
        account_obj = Account.objects.select_for_update().get(pk=_pk(account))
        if account_obj.kind != Account.Kind.CLIENT:
            raise InvoicingValidationError("Only client accounts subscribe.", field="account")
        if account_obj.status == Account.Status.CLOSED:
            raise AccountClosed(account=account_obj.number)
        if not account_obj.brands.filter(pk=tariff_obj.service.brand_id).exists():
            raise ledger.BrandNotLinked(
                f"Account {account_obj.number} is not linked to the service's brand.",
                account=account_obj.number,
                brand=tariff_obj.service.brand_id,
            )
        if account_obj.currency != tariff_obj.currency:
            raise CurrencyMismatch(
                f"The tariff is in {tariff_obj.currency}, the account in {account_obj.currency}.",
                account_currency=account_obj.currency,
                currency=tariff_obj.currency,
            )
        check_days_open(starts_on)
        subscription = Subscription(
            account=account_obj,
            service_id=tariff_obj.service_id,
            tariff=tariff_obj,
            starts_on=starts_on,
            ends_on=ends_on,
        )
        try:
            with transaction.atomic():
                subscription.save()
        except IntegrityError as exc:
            if "no_overlap" in str(exc):
                raise SubscriptionOverlap(field="starts_on") from None
            raise
    return subscription


@transaction.atomic
def subscription_end(*, subscription: Subscription, ends_on: date) -> Subscription:
    """End a subscription on ``ends_on`` (inclusive); billed days cannot be taken back."""
    check_day(ends_on, "ends_on")
    subscription = Subscription.objects.select_for_update().get(pk=subscription.pk)
    if ends_on < subscription.starts_on:
        raise InvoicingValidationError("ends_on is before starts_on.", field="ends_on")
    check_days_open(min(ends_on + timedelta(days=1), subscription.ends_on or date.max))
    subscription.ends_on = ends_on
    subscription.save(update_fields=["ends_on"])
    return subscription
