"""Clients and accounts in and out of spreadsheets (django-import-export resources).

Every imported row goes through ``accounts.services`` (``core.sheets.ServiceBackedResource``):
new clients by ``client_create``, changed ones by ``client_update``; new accounts by
``account_create`` (the client named by ``client_tax_id`` or ``client_external_ref``,
the payer by its number in ``parent``, brands by their codes), changed ones by
``account_update`` and ``account_set_parent``. A raise of the credit limit past the
approval threshold is refused (``approval_required``): it is filed for a second
person's approval from the account page or the admin, never imported. A row with an
``id`` updates that record; a row without one creates a record.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from import_export import fields as ie_fields

from accounts.maker_checker import account_change_needs_approval
from accounts.models import Account, Client
from accounts.services import (
    CLIENT_FIELDS,
    LIMIT_FIELDS,
    account_check,
    account_create,
    account_parents_check,
    account_set_parent,
    account_update,
    accounts_create_bulk,
    client_check,
    client_create,
    client_update,
    clients_create_bulk,
)
from brands.models import Brand
from core.sheets import CodesWidget, LookupWidget, MoneyWidget, ServiceBackedResource

MONEY_LIMITS = (
    "credit_limit", "write_off_limit_transaction", "write_off_limit_day", "write_off_limit_month",
)  # fmt: skip


class ClientResource(ServiceBackedResource):
    """Clients in and out of spreadsheets; every imported row goes through the services."""

    file_unique = (("tax_id", "kpp"), ("external_ref",))
    required_columns = ("kind", "name")

    class Meta:
        model = Client
        fields = (
            "id",
            "kind",
            "name",
            "legal_name",
            "tax_id",
            "kpp",
            "ogrn",
            "email",
            "phone",
            "address",
            "external_ref",
            "status",
        )
        export_order = fields
        skip_unchanged = True
        report_skipped = True

    def service_save(self, instance: Client, is_create: bool, row: dict[str, Any]) -> None:
        values = {name: getattr(instance, name) for name in CLIENT_FIELDS}
        if is_create:
            created = client_create(**values)
            instance.pk = created.pk
            instance.created_at = created.created_at
            instance.updated_at = created.updated_at
        else:
            client_update(client=instance, **values)

    # The batched import (core.sheets.import_rows): new clients checked row by row as
    # clients_create_bulk checks them, then created by it a batch at a time.
    batch_size = 1000

    def batch_item(self, instance: Client, row: dict[str, Any]) -> Client:
        return client_check(**{name: getattr(instance, name) for name in CLIENT_FIELDS})

    def batch_create(self, items: list[Client]) -> None:
        clients_create_bulk(clients=items)


def _refusal(column: str, code: str, message: str) -> ValidationError:
    return ValidationError({column: ValidationError(message, code=code)})


def _money_field(name: str) -> ie_fields.Field:
    """An amount column read and written as a decimal with two places."""
    return ie_fields.Field(attribute=name, column_name=name, widget=MoneyWidget())


class AccountResource(ServiceBackedResource):
    """Accounts with their limits, payers and brands; balances go out, never in."""

    client_name = ie_fields.Field(attribute="client__name", column_name="client", readonly=True)
    client_tax_id = ie_fields.Field(
        attribute="client__tax_id", column_name="client_tax_id", readonly=True
    )
    client_external_ref = ie_fields.Field(
        attribute="client__external_ref", column_name="client_external_ref", readonly=True
    )
    parent = ie_fields.Field(
        attribute="parent", column_name="parent", widget=LookupWidget(Account, field="number")
    )
    brands = ie_fields.Field(
        attribute="brands", column_name="brands", widget=CodesWidget(Brand, field="code")
    )
    available = ie_fields.Field(column_name="available", readonly=True)
    credit_limit = _money_field("credit_limit")
    write_off_limit_transaction = _money_field("write_off_limit_transaction")
    write_off_limit_day = _money_field("write_off_limit_day")
    write_off_limit_month = _money_field("write_off_limit_month")
    required_columns = ("currency",)

    class Meta:
        model = Account
        fields = (
            "id",
            "number",
            "kind",
            "client_name",
            "client_tax_id",
            "client_external_ref",
            "currency",
            "status",
            "name",
            "balance",
            "held",
            "available",
            "credit_limit",
            "credit_period_days",
            "credit_expires_at",
            "write_off_limit_transaction",
            "write_off_limit_day",
            "write_off_limit_month",
            "parent",
            "brands",
            "negative_since",
            "created_at",
        )
        export_order = fields
        readonly_fields = ("kind", "status", "balance", "held", "negative_since", "created_at")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name in self._meta.readonly_fields:
            self.fields[name].readonly = True

    def get_queryset(self):
        return Account.objects.filter(kind=Account.Kind.CLIENT)

    def dehydrate_available(self, account: Account) -> str:
        """Own funds plus the credit line (before expiry rules), for a payer account."""
        if account.is_system or account.parent_id is not None:
            return ""
        return str(account.balance - account.held + account.credit_limit)

    def _client(self, row: dict[str, Any]) -> Client:
        tax_id = str(row.get("client_tax_id") or "").strip()
        ref = str(row.get("client_external_ref") or "").strip()
        batch = self.__dict__.get("_batch_clients")
        if tax_id:
            column, key = "client_tax_id", ("tax_id", tax_id)
        elif ref:
            column, key = "client_external_ref", ("external_ref", ref)
        else:
            raise _refusal("client_tax_id", "required", "Name the client by tax id or ref.")
        if batch is not None:
            found = batch.get(key)
        else:
            found = Client.objects.filter(**{key[0]: key[1]}).first()
        if found is None:
            raise _refusal(column, "not_found", "No such client.")
        return found

    # The batched import (core.sheets.import_rows): a batch's clients, payers and brands
    # looked up in one query each, the payers checked once per (payer, currency)
    # (account_parents_check), new accounts opened by accounts_create_bulk.
    batch_size = 1000

    def batch_prefetch(self, rows: list[dict[str, Any]]) -> None:
        super().batch_prefetch(rows)
        wanted: dict[str, set[str]] = {"tax_id": set(), "external_ref": set()}
        for row in rows:
            tax_id = str(row.get("client_tax_id") or "").strip()
            ref = str(row.get("client_external_ref") or "").strip()
            if tax_id:
                wanted["tax_id"].add(tax_id)
            elif ref:
                wanted["external_ref"].add(ref)
        found: dict[tuple[str, str], Client] = {}
        for name, values in wanted.items():
            if values:
                # The first client by id, as Client.objects.filter(...).first() finds it.
                for client in Client.objects.filter(**{f"{name}__in": values}).order_by("-id"):
                    found[(name, getattr(client, name))] = client
        self.__dict__["_batch_clients"] = found

    def batch_release(self) -> None:
        super().batch_release()
        self.__dict__.pop("_batch_clients", None)

    def batch_item(self, instance: Account, row: dict[str, Any]) -> Account:
        brands = self.cleaned("brands", row) if "brands" in row else None
        limits = {name: getattr(instance, name) for name in LIMIT_FIELDS}
        limits["credit_limit"] = limits["credit_limit"] or Decimal("0.00")
        spec = {
            "client": self._client(row),
            "currency": instance.currency or None,
            "brands": brands or (),
            "parent": instance.parent,
            "name": instance.name or "",
            **limits,
        }
        return account_check(**spec)

    def batch_prepare(self, batch: list[tuple[int, dict[str, Any]]]) -> Any:
        prepared = super().batch_prepare(batch)
        pairs = {
            (item.parent, item.currency) for _line, _row, item in prepared.ready if item.parent
        }
        refused = account_parents_check(pairs)
        if refused:
            keep = []
            for line, row, item in prepared.ready:
                if item.parent and (item.parent_id, item.currency) in refused:
                    prepared.single.append((line, row))
                else:
                    keep.append((line, row, item))
            prepared.ready = keep
            prepared.single.sort(key=lambda pair: pair[0])
        return prepared

    def batch_create(self, items: list[Account]) -> None:
        accounts_create_bulk(accounts=items)

    def service_save(self, instance: Account, is_create: bool, row: dict[str, Any]) -> None:
        brands = self.cleaned("brands", row) if "brands" in row else None
        limits = {name: getattr(instance, name) for name in LIMIT_FIELDS}
        if is_create:
            limits["credit_limit"] = limits["credit_limit"] or Decimal("0.00")
            created = account_create(
                client=self._client(row),
                currency=instance.currency or None,
                brands=brands or (),
                parent=instance.parent,
                name=instance.name or "",
                **limits,
            )
            instance.pk, instance.number = created.pk, created.number
            return
        stored = Account.objects.get(pk=instance.pk)
        changes = {
            name: value
            for name, value in {**limits, "name": instance.name}.items()
            if value != getattr(stored, name)
        }
        if account_change_needs_approval(stored, changes):
            raise _refusal(
                "credit_limit",
                "approval_required",
                "A raise of the credit limit past the threshold needs approval: file it "
                "from the account page.",
            )
        if instance.currency != stored.currency:
            raise _refusal("currency", "immutable", "An account's currency never changes.")
        if instance.parent_id != stored.parent_id:
            account_set_parent(account=stored, parent=instance.parent)
        account_update(account=stored, brands=brands, **changes)
