"""Signals of the service catalogue, sent *inside* the database transaction that changes it.

Brands sit below every app that bills, so the catalogue cannot ask them whether a
change is allowed; it announces the change instead, and a receiver refuses it by
raising a ``core.errors.DomainError`` (the transaction then rolls back).
"""

from django.dispatch import Signal

# kwargs: service (brands.models.Service, still with its current rate), vat_rate (Decimal,
# the new rate). Sent by ``brands.services.service_update`` before a service's VAT rate
# changes: VAT is part of every billed line, so invoicing refuses it on billed days.
service_vat_rate_changing = Signal()
