"""Design overview: invoicing.

**Inputs.** ``Tariff`` versions (per service and plan, effective-dated, never
overlapping: an exclusion constraint), ``Subscription`` (account x service x
plan over inclusive dates, never overlapping per account and service),
``UsageRecord`` and ``MeterReading``. Usage and readings arrive in bulk through
PostgreSQL COPY into a temporary staging table, validated set-based and
inserted with one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``
(``invoicing.ingest``); each batch is one transaction. Tariffs and
subscriptions cannot be changed on days of a closed period (``period_closed``):
billed prices stay billed. Late usage and readings are accepted for any
period; recalculation bills the difference.

**Rating** (``invoicing.rating``) is one SQL statement over a set of accounts:
subscription x tariff-version segments, usage per segment, meter consumption
(``invoicing.meters``: differences of cumulative readings, rollover,
replacement, estimates) spread by days, charges per kind, rounding half-up
per line, VAT included. The run, previews and recalculation all call it, so
they cannot disagree.

**Runs.** ``invoice_run_start`` records an ``InvoiceRun`` and enqueues a plan
task; the plan splits the accounts in scope into ``InvoiceRunChunk`` rows and
enqueues one django-q2 task per chunk. A chunk is processed in one database
transaction that first locks its chunk row (``SKIP LOCKED``; a done chunk is
skipped), so a task delivered twice, or re-delivered after its worker was
killed, does the work exactly once; a killed worker's transaction simply rolls
back. Per chunk: rate into a temp table; one ``INSERT ... SELECT`` creates the
invoices (``ON CONFLICT DO NOTHING`` on the partial unique index
``(account, brand, period) WHERE kind = 'invoice' AND status <> 'void'``: an
account is never billed twice, whoever races) and, in the same statement, their
lines. In draft mode the chunk stops there (``draft_ready`` once all chunks
are done; ``invoice_run_approve`` issues them in chunks). Issuing a batch
(``_issue``) posts every invoice total as a ledger accrual in one call
(``ledger.services.accruals_post_bulk``, subject ``invoice/<id>``, idempotency
key ``invoice:<id>``), takes the balance brought forward from the entries'
``balance_after``, applies any credit balance to the new invoice, allocates
the invoice numbers and sends ``invoice_issued``. A refused account (closed,
not linked to the brand) loses its draft and gets an ``InvoiceRunFailure``; an
unexpected error in the set-based path makes the chunk retry account by
account, recording the ones that fail, so one bad account never stops a run.
Progress counters live on the run and move in the chunk's transaction.

**Invoice numbers** are ``<prefix>-<year>-<000123>``, gap-free and ascending
per (brand, year), without serialising a run on one counter row: see
``invoice_numbers_allocate``.

**Status** changes follow ``INVOICE_TRANSITIONS`` (``invoice_status_set``);
row-by-row paths call it, set-based paths only make moves the table allows.
**Allocation**: a receiver of ``ledger.signals.transaction_posted`` (inside
the posting's transaction, holding the account lock) allocates a payment to the
account's open invoices oldest first, and a payment reversal takes its
allocations back; for every other posting it returns at once, and for a
payment to an account without open invoices it costs one indexed EXISTS.

**Recalculation** re-rates a billed (account, brand, period) with what is known
now and compares per service with the original plus earlier adjustments; any
difference becomes an adjustment invoice (``kind="adjustment"``, ``adjusts``
the original): a debit note is posted as an accrual, a credit note with
``ledger.services.credit_note_post`` (client +, the brand's revenue -) and its
credit is applied to the original invoice first. Runs recalculate the billed
periods of their accounts whose usage or readings arrived after the last check.

**Penalties**: a daily job marks overdue invoices and accrues ``daily rate x
overdue amount`` per invoice per day after the grace days, up to a cap, as
accruals (idempotency key and a unique row per invoice and day).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from accounts.models import Account
from brands.models import Brand, Service
from brands.services import SERVICE_FIELDS, service_create, service_update  # noqa: F401 (moved to brands)
from invoicing.exceptions import (
    InvalidInvoiceTransition,
    InvoicingValidationError,
    PeriodClosed,
    PeriodNotBilled,
    ReadingBackwards,
    RunNotApprovable,
    SubscriptionOverlap,
    TariffOverlap,
)
from invoicing.meters import month_add, reading_step
from invoicing.models import (
    BillingPeriod,
    Invoice,
    InvoiceAllocation,
    InvoiceLine,
    InvoiceRun,
    InvoiceRunChunk,
    InvoiceRunFailure,
    Meter,
    MeterReading,
    PenaltyAccrual,
    PenaltyPolicy,
    Subscription,
    Tariff,
    TariffTier,
)
from invoicing.rating import RATED_TABLE, RatedLine, rate_accounts, rated_lines
from invoicing.signals import invoice_issued, invoices_issued
from ledger import services as ledger
from ledger.exceptions import (
    AccountClosed,
    CurrencyMismatch,
    DomainError,
)
from ledger.models import Transaction

logger = logging.getLogger(__name__)

INVOICING = ledger.Caller.system("invoicing")
ZERO = Decimal("0.00")
CENT = Decimal("0.01")
Q6 = Decimal("0.000001")
PERIOD_RE = re.compile(r"^((?:19|20|21)\d{2})-(0[1-9]|1[0-2])$")

S = Invoice.Status
# Allowed invoice status moves: {from: {to, ...}}. Void and nothing else is final.
INVOICE_TRANSITIONS: dict[str, set[str]] = {
    S.DRAFT: {S.ISSUED, S.VOID},
    S.ISSUED: {S.PARTLY_PAID, S.PAID, S.OVERDUE, S.VOID},
    S.PARTLY_PAID: {S.ISSUED, S.PAID, S.OVERDUE},
    S.PAID: {S.ISSUED, S.PARTLY_PAID, S.OVERDUE},
    S.OVERDUE: {S.PAID, S.VOID},
    S.VOID: set(),
}


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def payment_terms_days() -> int:
    return int(_setting("INVOICING_PAYMENT_TERMS_DAYS", 10))


def today() -> date:
    return ledger.business_date(timezone.now())


# --------------------------------------------------------------------------- input helpers


def parse_decimal(
    value: Any, *, field_name: str, places: int = 6, allow_negative: bool = False
) -> Decimal:
    """A finite decimal with at most ``places`` decimals; floats are refused like money."""
    if isinstance(value, float | bool) or value is None:
        raise InvoicingValidationError(
            f"{field_name} must be a decimal string.", field=field_name, value=repr(value)
        )
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError, TypeError):
        raise InvoicingValidationError(
            f"{field_name} is not a number.", field=field_name, value=str(value)
        ) from None
    if not number.is_finite() or (number < 0 and not allow_negative):
        raise InvoicingValidationError(
            f"{field_name} must be a finite, non-negative number.",
            field=field_name,
            value=str(value),
        )
    if number != number.quantize(Decimal(1).scaleb(-places)):
        raise InvoicingValidationError(
            f"{field_name} has more than {places} decimal places.", field=field_name
        )
    if abs(number) >= Decimal(10) ** 14:
        raise InvoicingValidationError(f"{field_name} is too large.", field=field_name)
    return number


def round_money(value: Decimal, currency: str = "RUB") -> Decimal:
    places = ledger.CURRENCY_DECIMALS.get(currency, 2)
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(2199, 12, 31)


def check_day(value: date | None, field_name: str) -> None:
    """Billing works on days from 1900 to 2199 (periods are "YYYY-MM" in that range)."""
    if value is not None and not FIRST_DAY <= value <= LAST_DAY:
        raise InvoicingValidationError(
            f"{field_name} must be between {FIRST_DAY} and {LAST_DAY}.", field=field_name
        )


def _pk(obj: Any) -> int | None:
    if obj is None:
        return None
    return obj if isinstance(obj, int) else obj.pk


# --------------------------------------------------------------------------- periods


def billing_period_get(code: str) -> BillingPeriod:
    """The period ``YYYY-MM`` (created on first use, open)."""
    match = PERIOD_RE.match(code or "")
    if not match:
        raise InvoicingValidationError("A period is written YYYY-MM.", field="period", value=code)
    year, month = int(match[1]), int(match[2])
    starts_on = date(year, month, 1)
    ends_on = (date(year + month // 12, month % 12 + 1, 1)) - timedelta(days=1)
    period, _ = BillingPeriod.objects.get_or_create(
        code=code, defaults={"starts_on": starts_on, "ends_on": ends_on}
    )
    return period


def billing_period_for_day(day: date) -> BillingPeriod:
    return billing_period_get(f"{day.year:04d}-{day.month:02d}")


@transaction.atomic
def billing_period_close(*, period: BillingPeriod | str) -> BillingPeriod:
    """Close a period: its days can no longer be re-priced (late usage still recalculates)."""
    period = billing_period_get(period) if isinstance(period, str) else period
    BillingPeriod.objects.filter(pk=period.pk, status=BillingPeriod.Status.OPEN).update(
        status=BillingPeriod.Status.CLOSED, closed_at=timezone.now()
    )
    period.refresh_from_db()
    return period


def check_days_open(first_day: date) -> None:
    """Refuse a change that would re-price days from ``first_day`` on inside a closed period."""
    closed = (
        BillingPeriod.objects.filter(status=BillingPeriod.Status.CLOSED, ends_on__gte=first_day)
        .order_by("starts_on")
        .first()
    )
    if closed is not None:
        raise PeriodClosed(
            f"Period {closed.code} is closed; changes may start on {closed.ends_on + timedelta(1)}"
            " at the earliest.",
            period=closed.code,
        )


# --------------------------------------------------------------------------- tariffs


@dataclass(frozen=True)
class TierSpec:
    up_to: Decimal | None
    price: Decimal


def _tiers(tiers: Iterable[dict[str, Any]] | None) -> list[TierSpec]:
    specs: list[TierSpec] = []
    for index, tier in enumerate(tiers or []):
        if not isinstance(tier, dict):
            raise InvoicingValidationError("Each tier is an object.", field="tiers", index=index)
        up_to = tier.get("up_to")
        specs.append(
            TierSpec(
                None if up_to is None else parse_decimal(up_to, field_name=f"tiers[{index}].up_to"),
                parse_decimal(tier.get("price"), field_name=f"tiers[{index}].price"),
            )
        )
    if not specs:
        raise InvoicingValidationError("A tiered tariff needs tiers.", field="tiers")
    if specs[-1].up_to is not None:
        raise InvoicingValidationError("The last tier is open-ended (up_to null).", field="tiers")
    previous = Decimal(0)
    for index, spec in enumerate(specs[:-1]):
        if spec.up_to is None or spec.up_to <= previous:
            raise InvoicingValidationError(
                "Tiers ascend: each up_to is above the one before, only the last is null.",
                field="tiers",
                index=index,
            )
        previous = spec.up_to
    return specs


def tariff_create(
    *,
    service: Service | int,
    kind: str,
    valid_from: date,
    valid_to: date | None = None,
    price: Any = None,
    tiers: Iterable[dict[str, Any]] | None = None,
    minimum_charge: Any = None,
    plan: str = "standard",
    currency: str | None = None,
) -> Tariff:
    """Add a version of a tariff plan from ``valid_from``.

    An open-ended earlier version of the same plan is ended the day before, so
    a price change is one call. Refused when the new prices would reach days
    of a closed period or overlap another version.
    """
    service_obj = service if isinstance(service, Service) else Service.objects.get(pk=service)
    if kind not in Tariff.Kind.values:
        raise InvoicingValidationError(f"Unknown tariff kind {kind!r}.", field="kind")
    check_day(valid_from, "valid_from")
    check_day(valid_to, "valid_to")
    if valid_to is not None and valid_to < valid_from:
        raise InvoicingValidationError("valid_to is before valid_from.", field="valid_to")
    tier_specs: list[TierSpec] = []
    if kind == Tariff.Kind.TIERED:
        if price is not None:
            raise InvoicingValidationError("A tiered tariff has tiers, not a price.", field="price")
        tier_specs = _tiers(tiers)
        price_value = None
    else:
        if tiers:
            raise InvoicingValidationError("Only tiered tariffs have tiers.", field="tiers")
        price_value = parse_decimal(price, field_name="price")
    minimum = (
        None
        if minimum_charge is None
        else parse_decimal(minimum_charge, field_name="minimum_charge")
    )
    with transaction.atomic():
        check_days_open(valid_from)
        previous = (
            Tariff.objects.select_for_update(of=("self",))
            .filter(
                service=service_obj, plan=plan, valid_to__isnull=True, valid_from__lt=valid_from
            )
            .order_by("pk")
            .first()
        )
        if previous is not None:
            previous.valid_to = valid_from - timedelta(days=1)
            previous.save(update_fields=["valid_to"])
        tariff = Tariff(
            service=service_obj,
            plan=plan,
            kind=kind,
            price=price_value,
            minimum_charge=minimum,
            currency=currency or settings.BILLING_DEFAULT_CURRENCY,
            valid_from=valid_from,
            valid_to=valid_to,
        )
        _full_clean_except(tariff, exclude=["service"])
        try:
            with transaction.atomic():
                tariff.save()
        except IntegrityError as exc:
            if "no_overlapping_versions" in str(exc):
                raise TariffOverlap(field="valid_from") from None
            raise
        lower = Decimal(0)
        TariffTier.objects.bulk_create(
            [
                TariffTier(
                    tariff=tariff,
                    position=position,
                    from_quantity=lower if position == 1 else tier_specs[position - 2].up_to,
                    up_to=spec.up_to,
                    price=spec.price,
                )
                for position, spec in enumerate(tier_specs, start=1)
            ]
        )
    return tariff


def _full_clean_except(obj: Any, exclude: list[str]) -> None:
    from django.core.exceptions import ValidationError

    try:
        obj.full_clean(exclude=exclude, validate_constraints=False)
    except ValidationError as exc:
        details = {name: [str(m) for m in msgs] for name, msgs in exc.message_dict.items()}
        raise InvoicingValidationError(
            "; ".join(f"{k}: {' '.join(v)}" for k, v in details.items()), **details
        ) from None


# --------------------------------------------------------------------------- subscriptions


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


# --------------------------------------------------------------------------- meters


@transaction.atomic
def meter_install(
    *,
    account: Account | int,
    service: Service | int,
    installed_at: datetime,
    initial_reading: Any = "0",
    serial: str = "",
    digits: int | None = None,
) -> Meter:
    """Install a meter; its initial reading is the baseline (it consumes nothing)."""
    reading = parse_decimal(initial_reading, field_name="initial_reading")
    meter = Meter(
        account_id=_pk(account),
        service_id=_pk(service),
        serial=serial,
        digits=digits,
        installed_at=installed_at,
    )
    try:
        with transaction.atomic():
            meter.save()
    except IntegrityError:
        raise InvoicingValidationError(
            "The account already has an active meter for this service.", field="service"
        ) from None
    MeterReading.objects.create(
        meter=meter,
        account_id=meter.account_id,
        service_id=meter.service_id,
        reading=reading,
        taken_at=installed_at,
        consumption=ZERO,
        external_id=f"meter:{meter.pk}:installed",
        source="meter_install",
    )
    return meter


@transaction.atomic
def meter_replace(
    *,
    meter: Meter | int,
    replaced_at: datetime,
    final_reading: Any,
    new_initial_reading: Any = "0",
    new_serial: str = "",
    new_digits: int | None = None,
) -> Meter:
    """Replace a meter: the old one's final reading closes its series, the new one starts at
    its initial reading. Consumption of the period is then old (up to the final reading)
    plus new (from the initial reading). Locks the old meter."""
    old = Meter.objects.select_for_update().get(pk=_pk(meter))
    if old.removed_at is not None:
        raise InvoicingValidationError("The meter was already removed.", field="meter")
    final = parse_decimal(final_reading, field_name="final_reading")
    if MeterReading.objects.filter(meter=old, taken_at__gt=replaced_at).exists():
        raise InvoicingValidationError(
            "The meter has readings after the replacement time.", field="replaced_at"
        )
    last = MeterReading.objects.filter(meter=old).order_by("-taken_at", "-id").first()
    step = ZERO
    if last is not None:
        found = reading_step(last.reading, final, old.digits)
        if found is None:
            raise ReadingBackwards(
                f"The final reading {final} is below the last reading {last.reading}.",
                field="final_reading",
            )
        step = found
    MeterReading.objects.create(
        meter=old,
        account_id=old.account_id,
        service_id=old.service_id,
        reading=final,
        taken_at=replaced_at,
        consumption=step,
        external_id=f"meter:{old.pk}:removed",
        source="meter_replace",
    )
    old.removed_at = replaced_at
    old.save(update_fields=["removed_at"])
    return meter_install(
        account=old.account_id,
        service=old.service_id,
        installed_at=replaced_at,
        initial_reading=new_initial_reading,
        serial=new_serial,
        digits=new_digits,
    )


# --------------------------------------------------------------------------- invoice numbers


def invoice_numbers_allocate(*, brand_id: int, year: int, count: int) -> list[int]:
    """Take ``count`` consecutive invoice numbers of a brand and year: one short upsert.

    Gap-free without serialising a run: the (brand, year) counter row is bumped
    by the whole block in one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``
    and the block is ``last - count + 1 .. last``. The row lock this takes is
    held until the caller's transaction ends, which is what makes the numbers
    gap-free: a chunk that rolls back rolls its bump back too, and the next
    chunk gets the same numbers. So ``_issue`` allocates *last*, after the
    expensive work (rating, inserts, ledger postings), right before the chunk
    commits: concurrent chunks run in parallel and queue on this row only for
    their final UPDATE of the numbers and the commit. A run's chunks thus take
    ascending blocks in commit order; numbers ascend with issue order.
    Callers needing several brands take them in brand-id order (no deadlocks).
    """
    if count <= 0:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO invoicing_invoicenumbercounter (brand_id, year, last_number)
            VALUES (%s, %s, %s)
            ON CONFLICT (brand_id, year) DO UPDATE
                SET last_number = invoicing_invoicenumbercounter.last_number + EXCLUDED.last_number
            RETURNING last_number
            """,
            [brand_id, year, count],
        )
        last = cursor.fetchone()[0]
    return list(range(last - count + 1, last + 1))


def invoice_number_format(prefix: str, year: int, number: int) -> str:
    return f"{prefix}-{year}-{number:06d}"


# --------------------------------------------------------------------------- status machine


def derived_status(
    total: Decimal, paid: Decimal, due_date: date | None, on: date, current: str = ""
) -> str:
    """Where an issued invoice stands: paid, overdue, partly paid or just issued.

    Once overdue (the daily job decides), an invoice stays overdue until it is paid.
    """
    if total <= 0:
        return S.ISSUED
    if paid >= total:
        return S.PAID
    if current == S.OVERDUE or (due_date is not None and on > due_date):
        return S.OVERDUE
    if paid > 0:
        return S.PARTLY_PAID
    return S.ISSUED


def check_transition(current: str, new: str) -> None:
    if new != current and new not in INVOICE_TRANSITIONS[current]:
        raise InvalidInvoiceTransition(
            f"An invoice cannot go from {current} to {new}.", current=current, requested=new
        )


def invoice_status_set(*, invoice: Invoice, status: str, save: bool = True) -> Invoice:
    """The one place an invoice changes status row by row, checked against the transitions."""
    check_transition(invoice.status, status)
    invoice.status = status
    if save:
        invoice.save(update_fields=["status"])
    return invoice


def invoice_void(
    *, invoice: Invoice | int, reason: str, caller: ledger.Caller = INVOICING
) -> Invoice:
    """Void a draft, or an unpaid issued invoice (its accrual is reversed in the ledger).

    Locks the account, then the invoice (the order payments use).
    """
    if not reason or not reason.strip():
        raise InvoicingValidationError("Voiding needs a reason.", field="reason")
    invoice_id = _pk(invoice)
    with transaction.atomic():
        account_id = Invoice.objects.values_list("account_id", flat=True).get(pk=invoice_id)
        ledger.lock_accounts([account_id])
        invoice_obj = Invoice.objects.select_for_update().get(pk=invoice_id)
        check_transition(invoice_obj.status, S.VOID)
        if invoice_obj.status != S.DRAFT:
            if invoice_obj.paid_amount > 0 or invoice_obj.allocations.exists():
                raise InvalidInvoiceTransition(
                    "A paid or partly paid invoice cannot be voided.", invoice=invoice_obj.pk
                )
            if invoice_obj.ledger_transaction_id is not None:
                ledger.transaction_reverse(
                    transaction_obj=invoice_obj.ledger_transaction_id,
                    reason=f"Invoice {invoice_obj.number} voided: {reason.strip()}",
                    caller=caller,
                    idempotency_key=f"invoice:{invoice_obj.pk}:void",
                )
        return invoice_status_set(invoice=invoice_obj, status=S.VOID)


def invoices_mark_overdue(*, on: date | None = None) -> int:
    """Mark open invoices past their due date overdue (rows locked in id order)."""
    on = on or today()
    for status in (S.ISSUED, S.PARTLY_PAID):
        check_transition(status, S.OVERDUE)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE invoicing_invoice SET status = 'overdue'
            WHERE id IN (
                SELECT id FROM invoicing_invoice
                WHERE status IN ('issued', 'partly_paid') AND total > 0 AND due_date < %s
                ORDER BY id FOR UPDATE
            )
            """,
            [on],
        )
        return cursor.rowcount


# --------------------------------------------------------------------------- issuing


@dataclass
class Failure:
    account_id: int
    brand_id: int | None
    code: str
    message: str


@dataclass
class IssueOutcome:
    issued: list[int] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


def _issue(invoice_ids: Sequence[int], *, run_id: int | None = None) -> IssueOutcome:
    """Issue draft invoices (all locked by or created in the caller's transaction).

    Posts the totals (accruals; credit notes credit the client), takes the
    balance brought forward from the ledger entries, applies credit balances,
    allocates numbers (last: see ``invoice_numbers_allocate``), sends the signals.
    """
    outcome = IssueOutcome()
    if not invoice_ids:
        return outcome
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT i.id, i.account_id, i.brand_id, i.total, i.currency, p.code, i.kind,
                   i.adjusts_id
            FROM invoicing_invoice i JOIN invoicing_billingperiod p ON p.id = i.period_id
            WHERE i.id = ANY(%s) AND i.status = 'draft'
            ORDER BY i.id
            """,
            [list(invoice_ids)],
        )
        rows = cursor.fetchall()
    if not rows:
        return outcome
    debit_rows = [row for row in rows if row[3] > 0]
    credit_rows = [row for row in rows if row[3] < 0]
    posted: dict[int, int] = {}  # invoice id -> ledger transaction id
    refused: list[tuple[int, int, int, DomainError]] = []
    items = [
        ledger.AccrualItem(
            account_id=account_id,
            amount=total,
            brand_id=brand_id,
            subject_type="invoice",
            subject_id=str(invoice_id),
            memo=("Invoice" if kind == Invoice.Kind.INVOICE else "Debit note") + f" for {period}",
            metadata={"invoice_id": invoice_id, "period": period, "invoice_kind": kind},
            idempotency_key=f"invoice:{invoice_id}",
        )
        for invoice_id, account_id, brand_id, total, _currency, period, kind, _adj in debit_rows
    ]
    for row, result in zip(debit_rows, post_accruals(items), strict=True):
        if isinstance(result, DomainError):
            refused.append((row[0], row[1], row[2], result))
        else:
            posted[row[0]] = result.pk
    for invoice_id, account_id, brand_id, total, _currency, period, _kind, _adj in credit_rows:
        try:
            txn = ledger.credit_note_post(
                account=account_id,
                amount=-total,
                brand=brand_id,
                subject_type="invoice",
                subject_id=str(invoice_id),
                memo=f"Credit note for {period}",
                metadata={"invoice_id": invoice_id, "period": period, "invoice_kind": "adjustment"},
                caller=INVOICING,
                idempotency_key=f"invoice:{invoice_id}",
            )
        except DomainError as exc:
            refused.append((invoice_id, account_id, brand_id, exc))
        else:
            posted[invoice_id] = txn.pk
    if refused:
        _delete_drafts([invoice_id for invoice_id, *_ in refused])
        outcome.failures.extend(
            Failure(account_id, brand_id, exc.code, exc.message)
            for _invoice_id, account_id, brand_id, exc in refused
        )
    if not posted:
        return outcome
    now = timezone.now()
    issue_day = ledger.business_date(now)
    due = issue_day + timedelta(days=payment_terms_days())
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT transaction_id, balance_after FROM ledger_entry
            WHERE transaction_id = ANY(%s) AND balance_after IS NOT NULL
            """,
            [list(posted.values())],
        )
        balance_after = dict(cursor.fetchall())
    by_id = {row[0]: row for row in rows}
    ids, bbf, paid, status, txn_ids = [], [], [], [], []
    allocations: list[InvoiceAllocation] = []
    for invoice_id, txn_id in sorted(posted.items()):
        total = by_id[invoice_id][3]
        brought_forward = balance_after[txn_id] + total
        credit = min(max(brought_forward, ZERO), total) if total > 0 else ZERO
        if credit > 0:
            allocations.append(
                InvoiceAllocation(
                    invoice_id=invoice_id,
                    source=InvoiceAllocation.Source.CREDIT_BALANCE,
                    amount=credit,
                )
            )
        ids.append(invoice_id)
        bbf.append(brought_forward)
        paid.append(credit)
        # draft -> issued, then issued -> paid / partly_paid when a credit covered it.
        new_status = derived_status(total, credit, due, issue_day)
        check_transition(S.ISSUED, new_status)
        status.append(new_status)
        txn_ids.append(txn_id)
    numbers = _numbers_for(ids, {row[0]: row[2] for row in rows}, issue_day.year)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE invoicing_invoice i
            SET number = v.number, status = v.status, balance_brought_forward = v.bbf,
                paid_amount = v.paid, ledger_transaction_id = v.txn, issued_at = %s,
                due_date = %s
            FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::numeric[], %s::numeric[],
                        %s::bigint[]) AS v(id, number, status, bbf, paid, txn)
            WHERE i.id = v.id
            """,
            [now, due, ids, [numbers[i] for i in ids], status, bbf, paid, txn_ids],
        )
    if allocations:
        InvoiceAllocation.objects.bulk_create(allocations)
    for invoice_id, *_rest in credit_rows:
        if invoice_id in posted:
            _apply_credit_note(invoice_id, posted[invoice_id])
    outcome.issued = ids
    _send_issued(ids, run_id)
    return outcome


def post_accruals(items: list[ledger.AccrualItem]) -> list[Transaction | DomainError]:
    """Post invoice totals: the ledger's set-based bulk accrual (one call per chunk)."""
    return ledger.accruals_post_bulk(items=items, caller=INVOICING)


def _numbers_for(ids: Sequence[int], brand_of: dict[int, int], year: int) -> dict[int, str]:
    """Allocate a block per brand (brands in id order) and hand it out in invoice-id order."""
    per_brand: dict[int, list[int]] = defaultdict(list)
    for invoice_id in sorted(ids):
        per_brand[brand_of[invoice_id]].append(invoice_id)
    prefixes = dict(Brand.objects.filter(pk__in=per_brand).values_list("pk", "invoice_prefix"))
    numbers: dict[int, str] = {}
    for brand_id in sorted(per_brand):
        block = invoice_numbers_allocate(
            brand_id=brand_id, year=year, count=len(per_brand[brand_id])
        )
        for invoice_id, number in zip(per_brand[brand_id], block, strict=True):
            numbers[invoice_id] = invoice_number_format(prefixes[brand_id], year, number)
    return numbers


def _delete_drafts(invoice_ids: Sequence[int]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM invoicing_invoiceline WHERE invoice_id = ANY(%s)", [invoice_ids]
        )
        cursor.execute(
            "DELETE FROM invoicing_invoice WHERE id = ANY(%s) AND status = 'draft'", [invoice_ids]
        )


def _send_issued(ids: list[int], run_id: int | None) -> None:
    if invoice_issued.has_listeners(Invoice):
        for invoice in Invoice.objects.filter(pk__in=ids).order_by("pk"):
            invoice_issued.send(sender=Invoice, invoice=invoice)
    invoices_issued.send(sender=Invoice, invoice_ids=ids, run_id=run_id)


# --------------------------------------------------------------------------- allocation


def _open_invoices_locked(account_id: int) -> list[Invoice]:
    """The account's open invoices, locked in id order (deadlock-free), oldest issued first."""
    invoices = list(
        Invoice.objects.select_for_update()
        .filter(account_id=account_id, status__in=Invoice.OPEN_STATUSES, total__gt=0)
        .order_by("id")
    )
    invoices.sort(key=lambda inv: (inv.issued_at or timezone.now(), inv.pk))
    return invoices


def _allocate(
    *,
    account_id: int,
    amount: Decimal,
    source: str,
    transaction_id: int | None,
    first: int | None = None,
) -> Decimal:
    """Apply ``amount`` to open invoices, oldest first (``first`` before all). Returns the rest."""
    invoices = _open_invoices_locked(account_id)
    if first is not None:
        invoices.sort(key=lambda inv: inv.pk != first)
    remaining = amount
    on = today()
    allocations = []
    changed = []
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
        changed.append(invoice)
    if changed:
        Invoice.objects.bulk_update(changed, ["paid_amount", "status"])
        InvoiceAllocation.objects.bulk_create(allocations)
    return remaining


def payment_allocate(txn: Transaction) -> None:
    """A payment was posted (the account is locked): pay open invoices, oldest first."""
    if not Invoice.objects.filter(
        account_id=txn.account_id, status__in=Invoice.OPEN_STATUSES, total__gt=0
    ).exists():
        return
    _allocate(
        account_id=txn.account_id,
        amount=txn.amount,
        source=InvoiceAllocation.Source.PAYMENT,
        transaction_id=txn.pk,
    )


def payment_reversal_unallocate(reversal: Transaction) -> None:
    """A payment was reversed: take its allocations back (newest invoice first).

    When part of the reversed money had reached invoices as a credit balance at
    issue (and so has no trace to this payment), credit-balance allocations are
    taken back, newest first, until the invoices owe at least the account's debt.
    """
    direct = list(
        InvoiceAllocation.objects.filter(transaction_id=reversal.reversal_of_id)
        .values("invoice_id")
        .annotate(total=Sum("amount"))
    )
    taken_back = sum((row["total"] for row in direct), ZERO)
    remainder = reversal.amount - taken_back
    credit_balance = (
        remainder > 0
        and InvoiceAllocation.objects.filter(
            invoice__account_id=reversal.account_id, source=InvoiceAllocation.Source.CREDIT_BALANCE
        ).exists()
    )
    if not direct and not credit_balance:
        return
    amounts = {row["invoice_id"]: row["total"] for row in direct if row["total"] > 0}
    if credit_balance:
        account = Account.objects.only("balance", "parent_id").get(pk=reversal.account_id)
        if account.parent_id is None and account.balance < 0:
            owed = (
                Invoice.objects.filter(
                    account_id=reversal.account_id, status__in=Invoice.OPEN_STATUSES, total__gt=0
                ).aggregate(owed=Sum(F("total") - F("paid_amount")))["owed"]
                or ZERO
            )
            missing = min(-account.balance - owed, remainder)
            if missing > 0:
                for allocation in InvoiceAllocation.objects.filter(
                    invoice__account_id=reversal.account_id,
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
                source=InvoiceAllocation.Source.PAYMENT_REVERSAL,
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
    _allocate(
        account_id=note.account_id,
        amount=-note.total,
        source=InvoiceAllocation.Source.CREDIT_NOTE,
        transaction_id=transaction_id,
        first=note.adjusts_id,
    )


# --------------------------------------------------------------------------- runs: rating chunk

_INSERT_INVOICES_SQL = f"""
WITH totals AS (
    SELECT account_id, brand_id, currency, SUM(amount) AS total, SUM(vat) AS vat
    FROM {RATED_TABLE}
    GROUP BY account_id, brand_id, currency
    HAVING SUM(amount) > 0
),
inv AS (
    INSERT INTO invoicing_invoice
        (account_id, brand_id, period_id, kind, status, currency, subtotal, vat, total,
         paid_amount, rated_at, inputs_checked_at, run_id, pdf)
    SELECT account_id, brand_id, %(period)s, 'invoice', 'draft', currency, total - vat, vat,
           total, 0, %(now)s, %(now)s, %(run)s, ''
    FROM totals
    ORDER BY account_id, brand_id
    ON CONFLICT (account_id, brand_id, period_id)
        WHERE kind = 'invoice' AND status <> 'void' DO NOTHING
    RETURNING id, account_id, brand_id
),
lines AS (
    INSERT INTO invoicing_invoiceline
        (invoice_id, position, kind, service_id, subscription_id, tariff_id, description,
         starts_on, ends_on, quantity, unit_price, amount, vat_rate, vat, estimated)
    SELECT inv.id, r.position, r.kind, r.service_id, r.subscription_id, r.tariff_id,
           left(r.description, 300), r.starts_on, r.ends_on, r.quantity, r.unit_price, r.amount,
           r.vat_rate, r.vat, r.estimated
    FROM {RATED_TABLE} r
    JOIN inv ON inv.account_id = r.account_id AND inv.brand_id = r.brand_id
)
SELECT id FROM inv ORDER BY id
"""


@dataclass
class ChunkOutcome:
    invoices: int = 0
    adjustments: int = 0
    failures: list[Failure] = field(default_factory=list)

    def merge(self, other: ChunkOutcome) -> None:
        self.invoices += other.invoices
        self.adjustments += other.adjustments
        self.failures.extend(other.failures)


def _bill_accounts(run: InvoiceRun, account_ids: Sequence[int]) -> ChunkOutcome:
    """Rate and create (draft or issued) invoices for accounts not yet billed this period."""
    outcome = ChunkOutcome()
    started = timezone.now()
    rate_accounts(account_ids, run.period, run.brand_id)
    with connection.cursor() as cursor:
        cursor.execute(
            _INSERT_INVOICES_SQL, {"period": run.period_id, "now": started, "run": run.pk}
        )
        created = [row[0] for row in cursor.fetchall()]
    if run.mode == InvoiceRun.Mode.DRAFT:
        outcome.invoices = len(created)
        return outcome
    issued = _issue(created, run_id=run.pk)
    outcome.invoices = len(issued.issued)
    outcome.failures.extend(issued.failures)
    outcome.merge(_recalculate_changed(run, account_ids, before=started))
    return outcome


def _issue_drafts(run: InvoiceRun, account_ids: Sequence[int]) -> ChunkOutcome:
    """Approval: issue the run's drafts of these accounts as they were previewed."""
    outcome = ChunkOutcome()
    started = timezone.now()
    drafts = list(
        Invoice.objects.select_for_update()
        .filter(run=run, account_id__in=account_ids, status=S.DRAFT)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    issued = _issue(drafts, run_id=run.pk)
    outcome.invoices = len(issued.issued)
    outcome.failures.extend(issued.failures)
    outcome.merge(_recalculate_changed(run, account_ids, before=started))
    return outcome


# --------------------------------------------------------------------------- runs: orchestration


def _enqueue(func: str, *args: Any, group: str | None = None) -> None:
    from django_q.tasks import async_task

    async_task(func, *args, group=group, sync=bool(settings.Q_CLUSTER.get("sync", False)))


def invoice_run_start(
    *,
    period: str | BillingPeriod,
    brand: Brand | int | None = None,
    mode: str = InvoiceRun.Mode.ISSUE,
    chunk_size: int | None = None,
    created_by: Any = None,
) -> InvoiceRun:
    """Record a run and start it in the background (a q2 plan task after commit)."""
    if mode not in InvoiceRun.Mode.values:
        raise InvoicingValidationError(f"Unknown run mode {mode!r}.", field="mode")
    size = int(chunk_size or _setting("INVOICING_CHUNK_SIZE", 1000))
    if size < 1:
        raise InvoicingValidationError("chunk_size must be positive.", field="chunk_size")
    with transaction.atomic():
        period_obj = billing_period_get(period) if isinstance(period, str) else period
        run = InvoiceRun.objects.create(
            period=period_obj,
            brand_id=_pk(brand),
            mode=mode,
            chunk_size=size,
            created_by=created_by if getattr(created_by, "pk", None) else None,
        )
        transaction.on_commit(
            lambda: _enqueue("invoicing.tasks.invoice_run_plan", run.pk, group=f"run-{run.pk}")
        )
    return run


def _chunks(items: Sequence[int], size: int) -> list[list[int]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def invoice_run_plan(*, run_id: int) -> InvoiceRun:
    """Split the run's accounts into chunks and enqueue one task per chunk."""
    with transaction.atomic(durable=True):
        run = (
            InvoiceRun.objects.select_for_update(of=("self",))
            .select_related("period")
            .get(pk=run_id)
        )
        if run.status != InvoiceRun.Status.PENDING:
            return run
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT DISTINCT s.account_id FROM invoicing_subscription s
                JOIN brands_service sv ON sv.id = s.service_id
                WHERE s.starts_on <= %(pe)s AND (s.ends_on IS NULL OR s.ends_on >= %(ps)s)
                  AND (%(brand)s::bigint IS NULL OR sv.brand_id = %(brand)s::bigint)
                ORDER BY s.account_id
                """,
                {"ps": run.period.starts_on, "pe": run.period.ends_on, "brand": run.brand_id},
            )
            accounts = [row[0] for row in cursor.fetchall()]
        chunks = _chunks(accounts, run.chunk_size)
        InvoiceRunChunk.objects.bulk_create(
            InvoiceRunChunk(run=run, phase=InvoiceRun.Phase.RATE, index=i, account_ids=ids)
            for i, ids in enumerate(chunks)
        )
        run.total = len(accounts)
        run.chunks_total = len(chunks)
        run.status = InvoiceRun.Status.RUNNING
        run.started_at = timezone.now()
        run.save(update_fields=["total", "chunks_total", "status", "started_at"])
        if not chunks:
            _run_finish(run)
        else:
            _enqueue_chunks(run, InvoiceRun.Phase.RATE)
    return run


def _enqueue_chunks(run: InvoiceRun, phase: str) -> int:
    ids = list(
        InvoiceRunChunk.objects.filter(run=run, phase=phase, status=InvoiceRunChunk.Status.PENDING)
        .order_by("index")
        .values_list("pk", flat=True)
    )

    def enqueue() -> None:
        for chunk_id in ids:
            _enqueue("invoicing.tasks.invoice_run_chunk", chunk_id, group=f"run-{run.pk}")

    transaction.on_commit(enqueue)
    return len(ids)


def invoice_run_chunk_process(*, chunk_id: int) -> InvoiceRunChunk | None:
    """Do one chunk exactly once (see the design overview); returns None when nothing to do."""
    with transaction.atomic(durable=True):
        chunk = (
            # of=self and no default ordering: a join to the run would lock (and so skip
            # on) the run row, which every finishing chunk updates.
            InvoiceRunChunk.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pk=chunk_id, status=InvoiceRunChunk.Status.PENDING)
            .order_by("pk")
            .first()
        )
        if chunk is None:
            return None
        run = InvoiceRun.objects.select_related("period").get(pk=chunk.run_id)
        if run.status != InvoiceRun.Status.RUNNING or run.phase != chunk.phase:
            return None
        with connection.cursor() as cursor:
            # Short set-based statements: JIT compiling them costs more than running them.
            cursor.execute("SET LOCAL jit = off")
        work = _issue_drafts if chunk.phase == InvoiceRun.Phase.ISSUE else _bill_accounts
        try:
            with transaction.atomic():
                outcome = work(run, chunk.account_ids)
        except Exception:
            logger.exception(
                "invoice run %s chunk %s failed as a set; retrying per account", run.pk, chunk.pk
            )
            outcome = ChunkOutcome()
            for account_id in chunk.account_ids:
                try:
                    with transaction.atomic():
                        outcome.merge(work(run, [account_id]))
                except Exception as exc:  # one account must not stop the run
                    logger.exception("invoice run %s: account %s failed", run.pk, account_id)
                    outcome.failures.append(
                        Failure(
                            account_id,
                            run.brand_id,
                            getattr(exc, "code", "internal_error"),
                            str(exc)[:2000] or exc.__class__.__name__,
                        )
                    )
        InvoiceRunFailure.objects.bulk_create(
            InvoiceRunFailure(
                run=run,
                account_id=f.account_id,
                brand_id=f.brand_id,
                code=f.code,
                message=f.message,
            )
            for f in outcome.failures
        )
        failed = len({f.account_id for f in outcome.failures})
        chunk.status = InvoiceRunChunk.Status.DONE
        chunk.processed = len(chunk.account_ids)
        chunk.failed = failed
        chunk.finished_at = timezone.now()
        chunk.save(update_fields=["status", "processed", "failed", "finished_at"])
        with connection.cursor() as cursor:
            cursor.execute(
                """
                UPDATE invoicing_invoicerun
                SET processed = processed + %s, failed = failed + %s, chunks_done = chunks_done + 1,
                    invoices_issued = invoices_issued + %s,
                    adjustments_issued = adjustments_issued + %s
                WHERE id = %s
                RETURNING chunks_done, chunks_total
                """,
                [chunk.processed, failed, outcome.invoices, outcome.adjustments, run.pk],
            )
            done, total = cursor.fetchone()
        if done >= total:
            _run_finish(InvoiceRun.objects.select_related("period").get(pk=run.pk))
    return chunk


def _run_finish(run: InvoiceRun) -> None:
    run.finished_at = timezone.now()
    if run.phase == InvoiceRun.Phase.RATE and run.mode == InvoiceRun.Mode.DRAFT:
        run.status = InvoiceRun.Status.DRAFT_READY
    else:
        run.status = InvoiceRun.Status.COMPLETED
        if run.brand_id is None:
            BillingPeriod.objects.filter(pk=run.period_id, status=BillingPeriod.Status.OPEN).update(
                status=BillingPeriod.Status.CLOSED, closed_at=run.finished_at
            )
    run.save(update_fields=["status", "finished_at"])


def invoice_run_approve(*, run: InvoiceRun | int, approved_by: Any = None) -> InvoiceRun:
    """Issue a ``draft_ready`` run's drafts, in chunks, in the background."""
    with transaction.atomic():
        run_obj = InvoiceRun.objects.select_for_update().get(pk=_pk(run))
        if run_obj.status != InvoiceRun.Status.DRAFT_READY:
            raise RunNotApprovable(run=run_obj.pk, status=run_obj.status)
        accounts = list(
            Invoice.objects.filter(run=run_obj, status=S.DRAFT)
            .order_by("account_id")
            .values_list("account_id", flat=True)
            .distinct()
        )
        chunks = _chunks(accounts, run_obj.chunk_size)
        InvoiceRunChunk.objects.bulk_create(
            InvoiceRunChunk(run=run_obj, phase=InvoiceRun.Phase.ISSUE, index=i, account_ids=ids)
            for i, ids in enumerate(chunks)
        )
        run_obj.phase = InvoiceRun.Phase.ISSUE
        run_obj.status = InvoiceRun.Status.RUNNING
        run_obj.total = len(accounts)
        run_obj.processed = run_obj.failed = 0
        run_obj.chunks_total = len(chunks)
        run_obj.chunks_done = 0
        run_obj.approved_at = timezone.now()
        run_obj.approved_by = approved_by if getattr(approved_by, "pk", None) else None
        run_obj.finished_at = None
        run_obj.save()
        if not chunks:
            _run_finish(run_obj)
        else:
            _enqueue_chunks(run_obj, InvoiceRun.Phase.ISSUE)
    return run_obj


def invoice_run_resume(*, run: InvoiceRun | int) -> int:
    """Re-enqueue what a run still has to do (after a crash); returns how many tasks."""
    with transaction.atomic():
        run_obj = InvoiceRun.objects.select_for_update().get(pk=_pk(run))
        if run_obj.status == InvoiceRun.Status.PENDING:
            pk = run_obj.pk
            transaction.on_commit(
                lambda: _enqueue("invoicing.tasks.invoice_run_plan", pk, group=f"run-{pk}")
            )
            return 1
        if run_obj.status != InvoiceRun.Status.RUNNING:
            return 0
        return _enqueue_chunks(run_obj, run_obj.phase)


def invoice_run_start_scheduled() -> InvoiceRun:
    """The monthly schedule: bill last month in the configured mode (draft by default)."""
    first_of_month = today().replace(day=1)
    last_month = first_of_month - timedelta(days=1)
    return invoice_run_start(
        period=f"{last_month.year:04d}-{last_month.month:02d}",
        mode=_setting("INVOICING_SCHEDULED_RUN_MODE", InvoiceRun.Mode.DRAFT),
    )


def invoice_preview(
    *, account: Account | int, period: str | BillingPeriod, brand: Brand | int | None = None
) -> list[RatedLine]:
    """The lines the account would be billed now for the period (nothing is written)."""
    period_obj = billing_period_get(period) if isinstance(period, str) else period
    with transaction.atomic():
        rate_accounts([_pk(account)], period_obj, _pk(brand))
        lines = rated_lines()
        transaction.set_rollback(True)
    return lines


# --------------------------------------------------------------------------- recalculation


# Runs look this many months back for billed periods whose inputs changed; older
# periods are recalculated on demand only.
RECALC_LOOKBACK_MONTHS = 12


def _recalc_margin() -> timedelta:
    # Usage rows carry their transaction's start time; a batch that started before a
    # rating and committed after it was not seen by it. Look back this far.
    return timedelta(minutes=int(_setting("INVOICING_RECALC_MARGIN_MINUTES", 15)))


def _recalculate_changed(
    run: InvoiceRun, account_ids: Sequence[int], before: datetime
) -> ChunkOutcome:
    """Recalculate billed periods (up to the run's) of these accounts whose inputs changed."""
    outcome = ChunkOutcome()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT i.id, i.account_id, i.period_id FROM invoicing_invoice i
            JOIN invoicing_billingperiod p ON p.id = i.period_id
            WHERE i.account_id = ANY(%(accounts)s::bigint[])
              AND i.kind = 'invoice' AND i.status NOT IN ('draft', 'void')
              AND i.inputs_checked_at < %(before)s
              AND p.starts_on <= %(period_start)s AND p.starts_on >= %(oldest)s
              AND (%(brand)s::bigint IS NULL OR i.brand_id = %(brand)s::bigint)
              AND (
                EXISTS (
                    SELECT 1 FROM invoicing_usagerecord u
                    WHERE u.account_id = i.account_id
                      AND u.occurred_at >= (p.starts_on::timestamp AT TIME ZONE %(tz)s)
                      AND u.occurred_at < ((p.ends_on + 1)::timestamp AT TIME ZONE %(tz)s)
                      AND u.created_at > i.inputs_checked_at - %(margin)s
                )
                OR EXISTS (
                    SELECT 1 FROM invoicing_meterreading r
                    WHERE r.account_id = i.account_id
                      AND r.taken_at >= ((p.starts_on - interval '4 months')::timestamp
                                         AT TIME ZONE %(tz)s)
                      AND r.created_at > i.inputs_checked_at - %(margin)s
                )
              )
            ORDER BY i.id
            """,
            {
                "accounts": list(account_ids),
                "before": before,
                "period_start": run.period.starts_on,
                "oldest": month_add(run.period.starts_on, -RECALC_LOOKBACK_MONTHS),
                "brand": run.brand_id,
                "tz": settings.TIME_ZONE,
                "margin": _recalc_margin(),
            },
        )
        candidates = cursor.fetchall()
    # Re-rate all candidates of a period at once and compare set-based: most of them
    # (records that arrived just before the original rating) changed nothing.
    by_period: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for original_id, account_id, period_id in candidates:
        by_period[period_id].append((original_id, account_id))
    originals: list[int] = []
    for period_id, rows in sorted(by_period.items()):
        period = BillingPeriod.objects.get(pk=period_id)
        rate_accounts(sorted({account_id for _o, account_id in rows}), period, run.brand_id)
        ids = [original_id for original_id, _a in rows]
        with connection.cursor() as cursor:
            cursor.execute(_CHANGED_ORIGINALS_SQL, {"originals": ids})
            changed = [row[0] for row in cursor.fetchall()]
            cursor.execute(
                "UPDATE invoicing_invoice SET inputs_checked_at = %s"
                " WHERE id = ANY(%s) AND NOT id = ANY(%s)",
                [timezone.now(), ids, changed],
            )
        originals.extend(changed)
    for original_id in sorted(originals):
        try:
            with transaction.atomic():
                adjustment = _recalculate_original(original_id)
        except DomainError as exc:
            row = Invoice.objects.values_list("account_id", "brand_id").get(pk=original_id)
            outcome.failures.append(Failure(row[0], row[1], exc.code, exc.message))
            continue
        if adjustment is not None:
            outcome.adjustments += 1
    return outcome


# Originals whose amounts per service differ from a fresh rating (in ``invoicing_rated``).
_CHANGED_ORIGINALS_SQL = f"""
WITH docs AS (
    SELECT o.original_id, d.invoice_id
    FROM unnest(%(originals)s::bigint[]) AS o(original_id)
    CROSS JOIN LATERAL (
        SELECT o.original_id AS invoice_id
      UNION ALL
        SELECT id FROM invoicing_invoice WHERE adjusts_id = o.original_id AND status <> 'void'
    ) d
),
billed AS (
    SELECT d.original_id, l.service_id, SUM(l.amount) AS amount
    FROM docs d JOIN invoicing_invoiceline l ON l.invoice_id = d.invoice_id
    GROUP BY 1, 2
),
rated AS (
    SELECT o.id AS original_id, r.service_id, SUM(r.amount) AS amount
    FROM invoicing_invoice o
    JOIN {RATED_TABLE} r ON r.account_id = o.account_id AND r.brand_id = o.brand_id
    WHERE o.id = ANY(%(originals)s::bigint[])
    GROUP BY 1, 2
)
SELECT DISTINCT COALESCE(b.original_id, r.original_id)
FROM billed b FULL JOIN rated r ON r.original_id = b.original_id AND r.service_id = b.service_id
WHERE COALESCE(b.amount, 0) <> COALESCE(r.amount, 0)
"""


def invoice_recalculate(
    *,
    account: Account | int,
    period: str | BillingPeriod,
    brand: Brand | int | None = None,
    brand_ids: Iterable[int] | None = None,
) -> list[Invoice]:
    """Re-rate a billed period with what is known now; issue the difference as adjustments.

    One adjustment per billed brand whose amounts changed (a debit note, or a
    credit note with a negative total); an empty list when nothing changed.
    ``brand`` / ``brand_ids`` limit it to those brands (a partner's). Refused
    with ``period_not_billed`` when the account has no issued invoice for the
    period (and brands).
    """
    period_obj = billing_period_get(period) if isinstance(period, str) else period
    query = Invoice.objects.filter(
        account_id=_pk(account), period=period_obj, kind=Invoice.Kind.INVOICE
    ).exclude(status__in=[S.DRAFT, S.VOID])
    if brand is not None:
        query = query.filter(brand_id=_pk(brand))
    if brand_ids is not None:
        query = query.filter(brand_id__in=list(brand_ids))
    originals = list(query.order_by("brand_id").values_list("pk", flat=True))
    if not originals:
        raise PeriodNotBilled(account=_pk(account), period=period_obj.code)
    adjustments = []
    with transaction.atomic():
        for original_id in originals:
            adjustment = _recalculate_original(original_id)
            if adjustment is not None:
                adjustments.append(adjustment)
    return adjustments


def _recalculate_original(original_id: int) -> Invoice | None:
    """Compare the original (plus its adjustments) with a fresh rating; issue the difference.

    Locks the account (as any posting would, first) and then the original
    invoice, so two recalculations of one period never both bill the difference.
    """
    account_id = Invoice.objects.values_list("account_id", flat=True).get(pk=original_id)
    ledger.lock_accounts([account_id])
    original = (
        Invoice.objects.select_for_update(of=("self",)).select_related("period").get(pk=original_id)
    )
    checked_at = timezone.now()
    rate_accounts([original.account_id], original.period, original.brand_id)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH billed AS (
                SELECT l.service_id,
                       SUM(l.quantity) FILTER (WHERE l.kind <> 'minimum') AS quantity,
                       SUM(l.amount) AS amount, SUM(l.vat) AS vat, MAX(l.vat_rate) AS vat_rate
                FROM invoicing_invoiceline l
                WHERE l.invoice_id = ANY(ARRAY(
                    SELECT %(original)s::bigint
                    UNION ALL
                    SELECT id FROM invoicing_invoice
                    WHERE adjusts_id = %(original)s AND status <> 'void'
                ))
                GROUP BY l.service_id
            ),
            rated AS (
                SELECT service_id,
                       SUM(quantity) FILTER (WHERE kind <> 'minimum') AS quantity,
                       SUM(amount) AS amount, SUM(vat) AS vat, MAX(vat_rate) AS vat_rate,
                       bool_or(estimated) AS estimated
                FROM {RATED_TABLE}
                GROUP BY service_id
            )
            SELECT COALESCE(r.service_id, b.service_id),
                   COALESCE(r.quantity, 0) - COALESCE(b.quantity, 0),
                   COALESCE(r.amount, 0) - COALESCE(b.amount, 0),
                   COALESCE(r.vat, 0) - COALESCE(b.vat, 0),
                   COALESCE(r.vat_rate, b.vat_rate), COALESCE(r.estimated, false), sv.name
            FROM rated r FULL JOIN billed b ON b.service_id = r.service_id
            JOIN brands_service sv ON sv.id = COALESCE(r.service_id, b.service_id)
            ORDER BY 1
            """,
            {"original": original.pk},
        )
        differences = [row for row in cursor.fetchall() if row[2] != 0]
    Invoice.objects.filter(pk=original.pk).update(inputs_checked_at=checked_at)
    if not differences:
        return None
    total = sum((row[2] for row in differences), ZERO)
    vat = sum((row[3] for row in differences), ZERO)
    if total == 0:
        return None
    adjustment = Invoice.objects.create(
        account_id=original.account_id,
        brand_id=original.brand_id,
        period_id=original.period_id,
        kind=Invoice.Kind.ADJUSTMENT,
        adjusts=original,
        status=S.DRAFT,
        currency=original.currency,
        subtotal=total - vat,
        vat=vat,
        total=total,
        rated_at=checked_at,
        inputs_checked_at=checked_at,
        run=None,
    )
    InvoiceLine.objects.bulk_create(
        InvoiceLine(
            invoice=adjustment,
            position=position,
            kind=InvoiceLine.Kind.ADJUSTMENT,
            service_id=service_id,
            description=f"Recalculation of {original.period.code}: {name}"[:300],
            starts_on=original.period.starts_on,
            ends_on=original.period.ends_on,
            quantity=quantity.quantize(Q6),
            unit_price=None,
            amount=amount,
            vat_rate=vat_rate,
            vat=line_vat,
            estimated=estimated,
        )
        for position, (
            service_id,
            quantity,
            amount,
            line_vat,
            vat_rate,
            estimated,
            name,
        ) in enumerate(differences, start=1)
    )
    issued = _issue([adjustment.pk])
    if issued.failures:
        failure = issued.failures[0]
        raise _RecalculationRefused(failure.message, code=failure.code)
    adjustment.refresh_from_db()
    return adjustment


class _RecalculationRefused(DomainError):
    code = "recalculation_refused"

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- penalties


@dataclass
class PenaltyOutcome:
    overdue_marked: int = 0
    accrued: int = 0
    amount: Decimal = ZERO
    failures: list[Failure] = field(default_factory=list)


def penalties_accrue(*, on: date | None = None, batch_size: int = 1000) -> PenaltyOutcome:
    """The daily job: mark overdue invoices, then accrue one day's penalty on each.

    Per the brand's ``PenaltyPolicy``: from the day after ``due_date +
    grace_days``, ``daily_rate_percent`` of the outstanding amount, rounded
    half-up to the cent, until the penalties on the invoice reach
    ``cap_percent`` of its total. Posted as accruals in batches; running twice
    on a day changes nothing (idempotency key ``penalty:<invoice>:<day>`` and
    a unique row per invoice and day).
    """
    on = on or today()
    outcome = PenaltyOutcome(overdue_marked=invoices_mark_overdue(on=on))
    last_id = 0
    while True:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    """
                    SELECT i.id, i.account_id, i.brand_id, i.number, i.currency, i.total,
                           i.total - i.paid_amount, p.daily_rate_percent, p.cap_percent,
                           COALESCE((SELECT SUM(a.amount) FROM invoicing_penaltyaccrual a
                                     WHERE a.invoice_id = i.id), 0)
                    FROM invoicing_invoice i
                    JOIN invoicing_penaltypolicy p ON p.brand_id = i.brand_id AND p.is_active
                    WHERE i.status = 'overdue' AND i.total > 0 AND i.id > %s
                      AND i.due_date + p.grace_days < %s
                      AND NOT EXISTS (SELECT 1 FROM invoicing_penaltyaccrual a
                                      WHERE a.invoice_id = i.id AND a.accrued_on = %s)
                    ORDER BY i.id
                    LIMIT %s
                    """,
                    [last_id, on, on, batch_size],
                )
                rows = cursor.fetchall()
            if not rows:
                return outcome
            last_id = rows[-1][0]
            _accrue_penalty_batch(rows, on, outcome)
        if len(rows) < batch_size:
            return outcome


def _accrue_penalty_batch(rows: list[tuple], on: date, outcome: PenaltyOutcome) -> None:
    items, planned = [], []
    for invoice_id, account_id, brand_id, number, currency, total, owed, rate, cap, accrued in rows:
        amount = round_money(owed * rate / 100, currency)
        if cap is not None:
            amount = min(amount, round_money(total * cap / 100, currency) - accrued)
        if amount <= 0:
            continue
        items.append(
            ledger.AccrualItem(
                account_id=account_id,
                amount=amount,
                brand_id=brand_id,
                subject_type="invoice",
                subject_id=str(invoice_id),
                memo=f"Penalty on invoice {number} for {on.isoformat()}",
                metadata={
                    "penalty": True,
                    "invoice_id": invoice_id,
                    "on": on.isoformat(),
                    "base": str(owed),
                    "daily_rate_percent": str(rate),
                },
                idempotency_key=f"penalty:{invoice_id}:{on.isoformat()}",
            )
        )
        planned.append((invoice_id, account_id, brand_id, owed, amount))
    if not items:
        return
    accruals = []
    for (invoice_id, account_id, brand_id, owed, amount), result in zip(
        planned, post_accruals(items), strict=True
    ):
        if isinstance(result, DomainError):
            outcome.failures.append(Failure(account_id, brand_id, result.code, result.message))
            continue
        accruals.append(
            PenaltyAccrual(
                invoice_id=invoice_id,
                accrued_on=on,
                base=owed,
                amount=amount,
                transaction_id=result.pk,
            )
        )
        if not getattr(result, "replayed", False):
            outcome.accrued += 1
            outcome.amount += amount
    PenaltyAccrual.objects.bulk_create(accruals, ignore_conflicts=True)


def penalty_policy_set(
    *,
    brand: Brand | int,
    daily_rate_percent: Any,
    grace_days: int = 0,
    cap_percent: Any = None,
    is_active: bool = True,
) -> PenaltyPolicy:
    rate = parse_decimal(daily_rate_percent, field_name="daily_rate_percent")
    if rate <= 0:
        raise InvoicingValidationError("The daily rate is positive.", field="daily_rate_percent")
    cap = (
        None
        if cap_percent is None
        else parse_decimal(cap_percent, field_name="cap_percent", places=2)
    )
    if grace_days < 0:
        raise InvoicingValidationError("Grace days cannot be negative.", field="grace_days")
    policy, _ = PenaltyPolicy.objects.update_or_create(
        brand_id=_pk(brand),
        defaults={
            "daily_rate_percent": rate,
            "grace_days": grace_days,
            "cap_percent": cap,
            "is_active": is_active,
        },
    )
    return policy
