"""Invoicing: tariffs, subscriptions, usage and meter readings, billing periods, runs, invoices.

Rating inputs (``Tariff``/``TariffTier``, ``Subscription``, ``UsageRecord``,
``MeterReading``) are written by services and bulk ingest; rating outputs
(``Invoice``/``InvoiceLine``) are written set-based by the invoice run. See the
design overview in ``invoicing/services/__init__.py``.

Dates are inclusive ranges of business days (``TIME_ZONE``): a subscription
``starts_on``..``ends_on`` and a tariff ``valid_from``..``valid_to`` include
both ends; ``None`` as the end means open-ended. Quantities and prices carry
six decimals (``NUMERIC(20,6)``), money two (``NUMERIC(18,2)``).
"""

from invoicing.models.invoices import (  # noqa: F401
    Invoice,
    InvoiceAllocation,
    InvoiceLine,
    InvoiceNumberCounter,
    InvoiceRun,
    InvoiceRunChunk,
    InvoiceRunFailure,
    PenaltyAccrual,
    PenaltyPolicy,
)
from invoicing.models.rating import (  # noqa: F401
    QUANTITY,
    TARIFF_AUDITED_FIELDS,
    TARIFF_TIER_AUDITED_FIELDS,
    ZERO,
    BillingPeriod,
    DateRange,
    Meter,
    MeterReading,
    Subscription,
    Tariff,
    TariffEvent,
    TariffTier,
    TariffTierEvent,
    TransactionIdField,
    UsageRecord,
    current_transaction_id,
)
