"""Subscriptions: an open client account, linked to the service's brand and in the
tariff's currency, takes a tariff plan over inclusive dates, never overlapping another
subscription of the account to that service (``SubscriptionOverlap``). Ending one
cannot take back billed days.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from django.db import IntegrityError, transaction

from accounts.models import Account
from brands.models import Service
from invoicing.exceptions import InvoicingValidationError, SubscriptionOverlap
from invoicing.models import Subscription, Tariff
from invoicing.services.inputs import _pk, check_day
from invoicing.services.periods import check_days_open
from ledger import services as ledger
from ledger.exceptions import AccountClosed, CurrencyMismatch


def _check_dates(tariff: Tariff, starts_on: date, ends_on: date | None, service: Any) -> None:
    if service is not None and _pk(service) != tariff.service_id:
        raise InvoicingValidationError(
            "The tariff belongs to another service.", field="tariff", tariff=tariff.pk
        )
    check_day(starts_on, "starts_on")
    check_day(ends_on, "ends_on")
    if ends_on is not None and ends_on < starts_on:
        raise InvoicingValidationError("ends_on is before starts_on.", field="ends_on")


def _check_subscriber(account: Account, tariff: Tariff, linked: bool) -> None:
    """An open client account, linked to the service's brand, in the tariff's currency."""
    if account.kind != Account.Kind.CLIENT:
        raise InvoicingValidationError("Only client accounts subscribe.", field="account")
    if account.status == Account.Status.CLOSED:
        raise AccountClosed(account=account.number)
    if not linked:
        raise ledger.BrandNotLinked(
            f"Account {account.number} is not linked to the service's brand.",
            account=account.number,
            brand=tariff.service.brand_id,
        )
    if account.currency != tariff.currency:
        raise CurrencyMismatch(
            f"The tariff is in {tariff.currency}, the account in {account.currency}.",
            account_currency=account.currency,
            currency=tariff.currency,
        )


def _save_subscriptions(subscriptions: list[Subscription]) -> list[Subscription]:
    try:
        with transaction.atomic():
            if len(subscriptions) == 1:
                subscriptions[0].save()
                return subscriptions
            return Subscription.objects.bulk_create(subscriptions, batch_size=5000)
    except IntegrityError as exc:
        if "no_overlap" in str(exc):
            raise SubscriptionOverlap(field="starts_on") from None
        raise


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
    _check_dates(tariff_obj, starts_on, ends_on, service)
    with transaction.atomic():
        account_obj = Account.objects.select_for_update().get(pk=_pk(account))
        linked = account_obj.brands.filter(pk=tariff_obj.service.brand_id).exists()
        _check_subscriber(account_obj, tariff_obj, linked)
        check_days_open(starts_on)
        subscription = Subscription(
            account=account_obj,
            service_id=tariff_obj.service_id,
            tariff=tariff_obj,
            starts_on=starts_on,
            ends_on=ends_on,
        )
        return _save_subscriptions([subscription])[0]


@transaction.atomic
def subscriptions_create_bulk(
    *, subscriptions: Sequence[tuple[int, Tariff, date, date | None]]
) -> list[Subscription]:
    """Many ``subscription_create`` calls in one: ``(account id, tariff, starts_on,
    ends_on)`` each, checked by the same rules on rows read (and locked, in id order)
    in a few statements and written with one multi-row insert. Any refusal refuses all.
    """
    account_ids = sorted({account_id for account_id, *_ in subscriptions})
    accounts = {
        a.pk: a
        for a in Account.objects.select_for_update().filter(pk__in=account_ids).order_by("pk")
    }
    links = set(
        Account.brands.through.objects.filter(account_id__in=account_ids).values_list(
            "account_id", "brand_id"
        )
    )
    for day in sorted({starts_on for _, _, starts_on, _ in subscriptions}):
        check_days_open(day)
    objs = []
    for account_id, tariff, starts_on, ends_on in subscriptions:
        _check_dates(tariff, starts_on, ends_on, None)
        account = accounts[account_id]
        _check_subscriber(account, tariff, (account_id, tariff.service.brand_id) in links)
        objs.append(
            Subscription(
                account_id=account_id,
                service_id=tariff.service_id,
                tariff=tariff,
                starts_on=starts_on,
                ends_on=ends_on,
            )
        )
    return _save_subscriptions(objs)


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
