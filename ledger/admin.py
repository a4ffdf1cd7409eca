"""Admin for the ledger: rows are read-only, money moves only through services.

Transactions, entries, holds and idempotency keys can be viewed but never
added, changed or deleted here (the database refuses UPDATE and DELETE on
them anyway). What staff can do instead, each through a ledger service with
``Caller.for_user`` and each behind the permission the API checks for the same
move: post a payment, debit, refund or adjustment from an account's page
(``ledger.post_payment``, ``post_debit``, ``post_refund``, ``post_adjustment``;
adjustments and large refunds are filed for approval, ``ledger.maker_checker``),
reverse a transaction with a reason (``ledger.reverse_transaction``), void or
capture a hold (``ledger.settle_hold``). Refusals are shown as admin messages
and change nothing.
"""

from __future__ import annotations

import uuid

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from accounts.admin import AccountAdmin, action_with_reason, admin_link, error_text
from accounts.models import Account
from approvals.models import ApprovalRequest
from approvals.notices import approval_filed_notice
from core.errors import DomainError
from core.validators import account_number_is_valid
from ledger import selectors, services
from ledger.forms import PostingForm
from ledger.models import Entry, Hold, IdempotencyKey, Transaction

REVERSE_PERMISSION = "ledger.reverse_transaction"
SETTLE_HOLD_PERMISSION = "ledger.settle_hold"


def _digits(term: str) -> str | None:
    compact = term.strip().replace(" ", "")
    return compact if compact.isdigit() else None


def _account_id(number: str) -> int | None:
    """The id of the account with this number: searches then use the indexed account columns."""
    if not account_number_is_valid(number):
        return None
    return Account.objects.filter(number=number).values_list("pk", flat=True).first()


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewing only: ledger rows are append-only and written by services."""

    show_full_result_count = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class EntryInline(admin.TabularInline):
    model = Entry
    fields = ("account_link", "subaccount_link", "amount", "currency", "balance_after")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("account", "subaccount")

    @admin.display(description="account")
    def account_link(self, obj: Entry) -> str:
        return admin_link(obj.account, obj.account.number)

    @admin.display(description="sub-account")
    def subaccount_link(self, obj: Entry) -> str:
        return admin_link(obj.subaccount, obj.subaccount.number) if obj.subaccount_id else "-"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class NumberSearchMixin:
    """Search by digits: an account number finds its rows (by the indexed account id);
    other digits match the row id or one of ``number_search_fields``."""

    number_search_fields: tuple[str, ...] = ()

    def get_search_results(self, request, queryset, search_term):
        digits = _digits(search_term)
        if digits:
            account_id = _account_id(digits)
            if account_id is not None:
                return queryset.filter(account_id=account_id), False
            condition = Q()
            for field_name in self.number_search_fields:
                condition |= Q(**{field_name: digits})
            if len(digits) <= 18:
                condition |= Q(pk=int(digits))
            return queryset.filter(condition), False
        return super().get_search_results(request, queryset, search_term)


@admin.register(Transaction)
class TransactionAdmin(NumberSearchMixin, ReadOnlyAdmin):
    number_search_fields = ("external_id", "subject_id")
    list_display = (
        "id",
        "created_at",
        "kind",
        "account_link",
        "amount",
        "currency",
        "brand",
        "service",
        "channel",
        "reversal_link",
        "caller",
    )
    list_filter = ("kind", "channel", "currency", "brand")
    search_fields = ("=external_id", "=subject_id")
    search_help_text = "Transaction id, account number, external id or subject id."
    list_select_related = ("account", "brand", "service", "reversal_of", "reversed_by")
    date_hierarchy = "created_at"
    inlines = (EntryInline,)
    actions = ("reverse_transactions",)
    fields = (
        "id",
        "kind",
        "account_link",
        "counter_account_link",
        "amount",
        "currency",
        "brand",
        "service",
        "channel",
        "subject_type",
        "subject_id",
        "metadata",
        "memo",
        "external_id",
        "reversal_of_link",
        "reversed_by_link",
        "hold_link",
        "caller",
        "created_by",
        "request_id",
        "created_at",
    )
    readonly_fields = fields

    @admin.display(description="account", ordering="account__number")
    def account_link(self, obj: Transaction) -> str:
        return admin_link(obj.account, obj.account.number)

    @admin.display(description="counter account")
    def counter_account_link(self, obj: Transaction) -> str:
        return (
            admin_link(obj.counter_account, obj.counter_account.number)
            if obj.counter_account_id
            else "-"
        )

    @admin.display(description="reversal")
    def reversal_link(self, obj: Transaction) -> str:
        if obj.reversal_of_id:
            return admin_link(obj.reversal_of, f"reverses #{obj.reversal_of_id}")
        reversed_by = getattr(obj, "reversed_by", None)
        if reversed_by is not None:
            return admin_link(reversed_by, f"reversed by #{reversed_by.pk}")
        return "-"

    @admin.display(description="reversal of")
    def reversal_of_link(self, obj: Transaction) -> str:
        return admin_link(obj.reversal_of) if obj.reversal_of_id else "-"

    @admin.display(description="reversed by")
    def reversed_by_link(self, obj: Transaction) -> str:
        return admin_link(getattr(obj, "reversed_by", None))

    @admin.display(description="hold")
    def hold_link(self, obj: Transaction) -> str:
        return admin_link(obj.hold) if obj.hold_id else "-"

    def has_reverse_permission(self, request) -> bool:
        return request.user.has_perm(REVERSE_PERMISSION)

    @admin.action(
        description="Reverse selected transactions (asks for a reason)", permissions=["reverse"]
    )
    def reverse_transactions(self, request, queryset):
        caller = services.Caller.for_user(request.user)
        return action_with_reason(
            self,
            request,
            queryset,
            title="Reverse transactions",
            submit="Reverse",
            apply=lambda txn, reason: services.transaction_reverse(
                transaction_obj=txn, reason=reason, caller=caller
            ),
            done="Transactions reversed",
        )


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "created_at",
        "transaction_link",
        "kind",
        "account_link",
        "subaccount_link",
        "amount",
        "currency",
        "balance_after",
    )
    list_filter = ("currency", "transaction__kind")
    search_fields = ("=account__number",)
    search_help_text = "Account number (payer or sub-account) or transaction id."
    list_select_related = ("transaction", "account", "subaccount")
    fields = (
        "id",
        "transaction_link",
        "account_link",
        "subaccount_link",
        "amount",
        "currency",
        "balance_after",
        "created_at",
    )
    readonly_fields = fields

    def get_search_results(self, request, queryset, search_term):
        digits = _digits(search_term)
        if digits:
            account_id = _account_id(digits)
            if account_id is not None:
                return queryset.filter(
                    Q(account_id=account_id) | Q(subaccount_id=account_id)
                ), False
            if len(digits) <= 18:
                return queryset.filter(transaction_id=int(digits)), False
            return queryset.none(), False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="transaction", ordering="transaction_id")
    def transaction_link(self, obj: Entry) -> str:
        return admin_link(obj.transaction, f"#{obj.transaction_id}")

    @admin.display(description="kind")
    def kind(self, obj: Entry) -> str:
        return obj.transaction.get_kind_display()

    @admin.display(description="account")
    def account_link(self, obj: Entry) -> str:
        return admin_link(obj.account, obj.account.number)

    @admin.display(description="sub-account")
    def subaccount_link(self, obj: Entry) -> str:
        return admin_link(obj.subaccount, obj.subaccount.number) if obj.subaccount_id else "-"


@admin.register(Hold)
class HoldAdmin(NumberSearchMixin, ReadOnlyAdmin):
    number_search_fields = ("subject_id",)
    list_display = (
        "id",
        "created_at",
        "account_link",
        "payer_link",
        "amount",
        "captured_amount",
        "currency",
        "status",
        "brand",
        "service",
        "expires_at",
    )
    list_filter = ("status", "brand")
    search_fields = ("=subject_id",)
    search_help_text = "Hold id, account number or subject id."
    list_select_related = ("account", "payer", "brand", "service")
    actions = ("void_holds", "capture_holds")
    readonly_fields = (
        "id",
        "account_link",
        "payer_link",
        "amount",
        "captured_amount",
        "currency",
        "status",
        "brand",
        "service",
        "subject_type",
        "subject_id",
        "metadata",
        "memo",
        "expires_at",
        "reserved_on",
        "caller",
        "created_by",
        "request_id",
        "created_at",
        "closed_at",
    )
    fields = readonly_fields

    @admin.display(description="account", ordering="account__number")
    def account_link(self, obj: Hold) -> str:
        return admin_link(obj.account, obj.account.number)

    @admin.display(description="payer")
    def payer_link(self, obj: Hold) -> str:
        return admin_link(obj.payer, obj.payer.number)

    def has_settle_permission(self, request) -> bool:
        return request.user.has_perm(SETTLE_HOLD_PERMISSION)

    def _settle(self, request, queryset, operation, done: str) -> None:
        caller = services.Caller.for_user(request.user)
        succeeded = 0
        for hold in queryset:
            try:
                operation(hold=hold.pk, caller=caller)
                succeeded += 1
            except DomainError as exc:
                self.message_user(request, f"{hold}: {error_text(exc)}", messages.ERROR)
        if succeeded:
            self.message_user(request, f"{done}: {succeeded}.", messages.SUCCESS)

    @admin.action(description="Void selected holds (release the funds)", permissions=["settle"])
    def void_holds(self, request, queryset):
        self._settle(request, queryset, services.hold_void, "Holds voided")

    @admin.action(description="Capture selected holds in full", permissions=["settle"])
    def capture_holds(self, request, queryset):
        self._settle(request, queryset, services.hold_capture, "Holds captured")


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(ReadOnlyAdmin):
    list_display = ("caller", "key", "operation", "transaction_link", "hold_link", "created_at")
    list_filter = ("operation",)
    search_fields = ("=key", "=caller")
    list_select_related = ("transaction", "hold")
    fields = (
        "caller",
        "key",
        "operation",
        "request_hash",
        "transaction_link",
        "hold_link",
        "created_at",
    )
    readonly_fields = fields

    @admin.display(description="transaction")
    def transaction_link(self, obj: IdempotencyKey) -> str:
        return admin_link(obj.transaction) if obj.transaction_id else "-"

    @admin.display(description="hold")
    def hold_link(self, obj: IdempotencyKey) -> str:
        return admin_link(obj.hold) if obj.hold_id else "-"


class LedgerAccountAdmin(AccountAdmin):
    """The account page with the ledger's view of it: available funds, history, posting form."""

    change_form_template = "admin/ledger/account_change_form.html"
    state_fields = (*AccountAdmin.state_fields, "available_funds")

    @admin.display(description="available funds")
    def available_funds(self, obj: Account) -> str:
        if obj.is_system:
            return str(selectors.system_account_balance(obj))
        view = selectors.account_balance(obj)
        remaining = view.write_off_remaining
        text = f"{view.available} {view.currency} (credit available {view.credit_available})"
        if remaining is not None:
            text += f"; write-off limits allow {remaining}"
        return text

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/post/",
                self.admin_site.admin_view(self.post_money_view),
                name=f"{info[0]}_{info[1]}_post",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_post": PostingForm.allowed_for(request.user),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def post_money_view(self, request, object_id):
        """Post a payment, debit, refund or adjustment on this account through the services."""
        account = self.get_object(request, object_id)
        if account is None:
            raise Http404("No such account.")
        if account.is_system:
            raise Http404("System accounts are not posted to directly.")
        if not (
            self.has_view_permission(request, account) and PostingForm.allowed_for(request.user)
        ):
            raise PermissionDenied
        if request.method == "POST":
            form = PostingForm(request.POST, user=request.user)
            if form.is_valid():
                try:
                    txn = form.post(
                        account=account,
                        caller=services.Caller.for_user(
                            request.user, request_id=request.META.get("HTTP_X_REQUEST_ID", "")
                        ),
                    )
                except DomainError as exc:
                    self.message_user(request, error_text(exc), messages.ERROR)
                else:
                    if isinstance(txn, ApprovalRequest):
                        self.message_user(request, approval_filed_notice(txn), messages.WARNING)
                        return HttpResponseRedirect(
                            reverse("admin:accounts_account_change", args=[account.pk])
                        )
                    replayed = (
                        " (already posted: this form was submitted before)"
                        if getattr(txn, "replayed", False)
                        else ""
                    )
                    self.message_user(
                        request,
                        format_html(
                            "Posted {} {} {} as {}{}.",
                            txn.get_kind_display(),
                            txn.amount,
                            txn.currency,
                            admin_link(txn, f"transaction #{txn.pk}"),
                            replayed,
                        ),
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(
                        reverse("admin:accounts_account_change", args=[account.pk])
                    )
        else:
            form = PostingForm(initial={"idempotency_key": uuid.uuid4().hex}, user=request.user)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Post to account {account.number}",
            "opts": self.opts,
            "original": account,
            "balance": selectors.account_balance(account),
            "form": form,
        }
        return TemplateResponse(request, "admin/ledger/post_money.html", context)


admin.site.unregister(Account)
admin.site.register(Account, LedgerAccountAdmin)
