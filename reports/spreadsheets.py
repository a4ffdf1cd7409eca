"""Spreadsheets in: what the staff UI, the admin and ``manage.py import_sheet`` import.

Each kind names the owning app's django-import-export resource (which saves every row
through that app's services), the permissions an import needs and the list it exports
from. The import itself is ``core.sheets.import_file``: rows streamed from CSV or XLSX
(bounded memory), one database transaction, errors as ``{row, column, code, message}``
(``row`` is the line of the file, the header being line 1), nothing written on a dry
run or when any row is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from django.utils.translation import gettext_lazy as _

from accounts.resources import AccountResource, ClientResource
from brands.resources import ServiceResource
from core.sheets import ImportOutcome, ServiceBackedResource, import_file
from invoicing.resources import MeterReadingResource, SubscriptionResource, TariffResource

ImportResult = ImportOutcome  # the name the accounts import had


@dataclass(frozen=True)
class SheetKind:
    slug: str
    label: str
    resource_class: type[ServiceBackedResource]
    # An import creates (and, for rows with an id, changes) these records.
    permissions: tuple[str, ...]


SHEET_KINDS = {
    kind.slug: kind
    for kind in (
        SheetKind("clients", _("Clients"), ClientResource,
                  ("accounts.add_client", "accounts.change_client")),
        SheetKind("accounts", _("Accounts"), AccountResource,
                  ("accounts.add_account", "accounts.change_account")),
        SheetKind("services", _("Services"), ServiceResource,
                  ("brands.add_service", "brands.change_service")),
        SheetKind("tariffs", _("Tariffs"), TariffResource, ("invoicing.add_tariff",)),
        SheetKind("subscriptions", _("Subscriptions"), SubscriptionResource,
                  ("invoicing.add_subscription", "invoicing.change_subscription")),
        SheetKind("meter-readings", _("Meter readings"), MeterReadingResource,
                  ("invoicing.add_meterreading",)),
    )
}  # fmt: skip


def sheet_import(
    *,
    kind: str,
    upload: BinaryIO,
    filename: str,
    dry_run: bool = True,
    batch_size: int | None = None,
) -> ImportOutcome:
    """Import a file of ``kind`` (see the module); all rows or none. ``batch_size``
    overrides the resource's (0: every row on its own, the per-row path)."""
    resource = SHEET_KINDS[kind].resource_class()
    return import_file(
        resource=resource,
        upload=upload,
        filename=filename,
        dry_run=dry_run,
        batch_size=batch_size,
    )


def accounts_import(*, upload: BinaryIO, filename: str, dry_run: bool = True) -> ImportOutcome:
    """Import accounts with their limits, payers and brands; all rows or none."""
    return sheet_import(kind="accounts", upload=upload, filename=filename, dry_run=dry_run)
