"""Maker-checker for a brand's bank details: they feed every invoice's payment QR.

A change of any of ``BANK_FIELDS`` on an existing brand is filed as a
``brands.bank_details`` request with the new values (``changes``) and the ones
they replace (``previous``); until it is approved, invoices keep printing the
current details. Approving applies it with ``brand_bank_details_update``,
unless the details changed meanwhile (``changed_since_requested``).
"""

from __future__ import annotations

from typing import Any

from approvals import registry
from approvals.exceptions import ChangedSinceRequested
from approvals.models import ApprovalRequest
from approvals.services import approval_request, as_stored
from brands.models import Brand
from brands.services import BANK_FIELDS, brand_bank_details_check, brand_bank_details_update
from core.caller import Caller

BANK_DETAILS = "brands.bank_details"


def bank_details_changes(brand: Brand, values: dict[str, Any]) -> dict[str, Any]:
    """Of ``values`` (field -> new value), the bank details that differ from the stored ones."""
    current = Brand.objects.values(*BANK_FIELDS).get(pk=brand.pk)
    return {
        name: value
        for name, value in values.items()
        if name in BANK_FIELDS and value != current[name]
    }


def bank_details_request(
    *, brand: Brand, changes: dict[str, Any], caller: Caller
) -> ApprovalRequest:
    """File new bank details for approval; they are validated now (BIK, account numbers)."""
    brand_bank_details_check(brand=brand, **changes)
    current = Brand.objects.get(pk=brand.pk)
    previous = {name: getattr(current, name) for name in changes}
    described = ", ".join(
        f"{name} {previous[name] or '-'} -> {changes[name] or '-'}" for name in changes
    )
    return approval_request(
        kind=BANK_DETAILS,
        payload={"brand": current.pk, "changes": as_stored(changes), "previous": previous},
        summary=f"Bank details of brand {current.code}: {described}",
        caller=caller,
        target=current,
    )


def execute_bank_details(request: ApprovalRequest, checker: Caller) -> Brand:
    payload = request.payload
    locked = Brand.objects.select_for_update().get(pk=payload["brand"])
    previous = payload["previous"]
    now = {name: getattr(locked, name) for name in previous}
    if now != previous:
        raise ChangedSinceRequested(brand=locked.pk, requested_over=previous, now=now)
    return brand_bank_details_update(brand=locked, **payload["changes"])


def register_kinds() -> None:
    registry.register(BANK_DETAILS, execute_bank_details, label="Brand bank details")
