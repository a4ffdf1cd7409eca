"""Maker-checker in the admin: the posting form files adjustments and large refunds, the
account and brand forms file credit-limit raises and bank details, and the requests'
admin lists them (pending first), shows the payload and decides them with two actions
that refuse the maker."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from accounts.models import Account
from approvals.models import ApprovalRequest
from approvals.services import approval_reject
from brands.models import Brand
from core.caller import Caller
from ledger.maker_checker import refund_request
from ledger.models import Transaction
from tests.api.helpers import ledger_state
from tests.approvals.conftest import staff_user

pytestmark = pytest.mark.django_db
D = Decimal
CHANGELIST = "admin:approvals_approvalrequest_changelist"


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def form_data(page) -> dict[str, Any]:
    """What the change form shows, as the browser would post it back unchanged."""
    data: dict[str, Any] = {}

    def add(form) -> None:
        for name in form.fields:
            value = form[name].value()
            key = form.add_prefix(name)
            if isinstance(value, bool):
                if value:
                    data[key] = "on"
            elif value is not None:
                data[key] = value
            else:
                data[key] = ""

    add(page.context["adminform"].form)
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        for name, value in formset.management_form.initial.items():
            data[f"{formset.prefix}-{name}"] = value
        for form in formset.forms:
            add(form)
    return data


def change_url(obj) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])


def change(client, obj, **changes):
    page = client.get(change_url(obj))
    assert page.status_code == 200
    return client.post(change_url(obj), {**form_data(page), **changes}, follow=True)


def post_form(client, account, **data):
    url = reverse("admin:accounts_account_post", args=[account.pk])
    page = client.get(url)
    key = page.context["form"].initial["idempotency_key"]
    payload = {"idempotency_key": key, "channel": "bank", "memo": "", **data}
    return client.post(url, payload, follow=True), payload


def decide(client, action: str, request_id: int, **extra):
    return client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [request_id], **extra},
        follow=True,
    )


def file_refund(account, maker, amount: str) -> ApprovalRequest:
    return refund_request(
        account=account, amount=amount, channel="bank", caller=Caller.for_user(maker)
    )


@pytest.fixture
def maker_client(client, maker):
    client.force_login(maker)
    return client


# --------------------------------------------------------------------------- posting form


def test_an_adjustment_from_the_posting_form_is_sent_for_approval(maker_client, account):
    before = ledger_state()
    response, payload = post_form(
        maker_client, account, operation="adjustment_debit", amount="300.00", memo="double fee"
    )
    assert any("Sent for approval" in m for m in messages_of(response))
    assert ledger_state() == before
    filed = ApprovalRequest.objects.get()
    assert (filed.kind, filed.status, filed.payload["amount"]) == (
        "ledger.adjustment",
        "pending",
        "-300.00",
    )
    # The same form again (a double click) files nothing new.
    url = reverse("admin:accounts_account_post", args=[account.pk])
    again = maker_client.post(url, payload, follow=True)
    assert any("already sent" in m for m in messages_of(again))
    assert ApprovalRequest.objects.count() == 1


def test_a_refund_from_the_posting_form_waits_only_above_the_threshold(
    settings, maker_client, account
):
    settings.BILLING_APPROVAL_REFUND_ABOVE = D("10000.00")
    post_form(maker_client, account, operation="refund", amount="10000.00")
    assert Transaction.objects.filter(kind="refund").count() == 1
    response, _ = post_form(maker_client, account, operation="refund", amount="10000.01")
    assert any("Sent for approval" in m for m in messages_of(response))
    assert Transaction.objects.filter(kind="refund").count() == 1
    assert ApprovalRequest.objects.get().kind == "ledger.refund"


# --------------------------------------------------------------------------- deciding


def test_the_maker_cannot_approve_their_own_request_in_the_admin(client, account, maker):
    maker.user_permissions.add(Permission.objects.get(codename="approve_request"))
    filed = file_refund(account, maker, "20000.00")
    client.force_login(maker)
    before = ledger_state()
    response = decide(client, "approve_requests", filed.pk)
    assert any("self_approval" in m for m in messages_of(response))
    rejected = decide(client, "reject_requests", filed.pk, apply="1", reason="mine")
    assert any("self_approval" in m for m in messages_of(rejected))
    assert ledger_state() == before
    assert ApprovalRequest.objects.get().status == "pending"


def test_another_user_approves_in_the_admin_and_the_result_is_linked(
    client, account, maker, checker
):
    filed = file_refund(account, maker, "20000.00")
    client.force_login(checker)
    response = decide(client, "approve_requests", filed.pk)
    assert any("approved and executed: 1" in m for m in messages_of(response))
    refund = Transaction.objects.get(kind="refund")
    filed.refresh_from_db()
    assert (filed.status, filed.result_id) == ("approved", refund.pk)
    page = client.get(change_url(filed)).content.decode()
    assert change_url(refund) in page and "20000.00" in page
    again = decide(client, "approve_requests", filed.pk)
    assert any("approval_not_pending" in m for m in messages_of(again))
    assert Transaction.objects.filter(kind="refund").count() == 1


def test_rejecting_in_the_admin_asks_for_a_reason(client, account, maker, checker):
    filed = file_refund(account, maker, "20000.00")
    client.force_login(checker)
    asked = decide(client, "reject_requests", filed.pk)
    assert asked.status_code == 200 and "reason" in asked.content.decode()
    assert ApprovalRequest.objects.get().status == "pending"
    decide(client, "reject_requests", filed.pk, apply="1", reason="not this client")
    filed.refresh_from_db()
    assert (filed.status, filed.reason) == ("rejected", "not this client")
    assert not Transaction.objects.filter(kind="refund").exists()


def test_a_user_without_the_approve_permission_is_not_offered_the_actions(client, account, maker):
    filed = file_refund(account, maker, "20000.00")
    client.force_login(staff_user("approvals.view_approvalrequest"))
    listing = client.get(reverse(CHANGELIST))
    assert listing.status_code == 200
    assert "approve_requests" not in listing.content.decode()
    decide(client, "approve_requests", filed.pk)
    assert ApprovalRequest.objects.get().status == "pending"


def test_the_requests_list_puts_pending_first_and_filters(client, account, maker, checker):
    first = file_refund(account, maker, "20000.00")
    second = file_refund(account, maker, "30000.00")
    approval_reject(request=second, checker=Caller.for_user(checker), reason="no")
    third = file_refund(account, maker, "15000.00")
    client.force_login(checker)
    listing = client.get(reverse(CHANGELIST))
    shown = [obj.pk for obj in listing.context["cl"].result_list]
    assert shown == [third.pk, first.pk, second.pk]
    pending = client.get(reverse(CHANGELIST), {"status__exact": "pending", "kind": "ledger.refund"})
    assert [obj.pk for obj in pending.context["cl"].result_list] == [third.pk, first.pk]
    detail = client.get(change_url(first)).content.decode()
    assert "<table>" in detail and "20000.00" in detail and "channel" in detail


# --------------------------------------------------------------------------- accounts


def test_a_credit_limit_raise_in_the_account_form_is_sent_for_approval(
    client, account, maker, checker
):
    client.force_login(maker)
    response = change(client, account, credit_limit="50000.00", write_off_limit_day="100.00")
    assert any("Sent for approval" in m for m in messages_of(response)), messages_of(response)
    fresh = Account.objects.get(pk=account.pk)
    assert (fresh.credit_limit, fresh.write_off_limit_day) == (D("0.00"), None)
    filed = ApprovalRequest.objects.get()
    assert filed.payload["changes"] == {"credit_limit": "50000.00", "write_off_limit_day": "100.00"}
    client.force_login(checker)
    decide(client, "approve_requests", filed.pk)
    fresh = Account.objects.get(pk=account.pk)
    assert (fresh.credit_limit, fresh.write_off_limit_day) == (D("50000.00"), D("100.00"))


def test_the_account_form_saves_small_limits_at_once_and_refuses_mixed_or_new_large_ones(
    client, account, maker, brand
):
    client.force_login(maker)
    change(client, account, credit_limit="10000.00")
    assert Account.objects.get(pk=account.pk).credit_limit == D("10000.00")
    mixed = change(client, account, credit_limit="50000.00", brands=[])
    assert mixed.context["adminform"].form.errors["credit_limit"]
    assert list(Account.objects.get(pk=account.pk).brands.all()) == [brand]
    client.force_login(staff_user("accounts.add_account", "accounts.view_client"))
    created = client.post(
        reverse("admin:accounts_account_add"),
        {"client": account.client_id, "currency": "RUB", "credit_limit": "20000.00"},
    )
    assert created.status_code == 200
    assert "approval" in str(created.context["adminform"].form.errors["credit_limit"])
    assert not ApprovalRequest.objects.exists()


# --------------------------------------------------------------------------- brands


def test_bank_details_changed_in_the_brand_form_wait_while_other_fields_save(
    client, brand, maker, checker
):
    client.force_login(maker)
    old_account = brand.bank_account
    response = change(client, brand, bank_account="40702810900000000999", name="Renamed brand")
    assert any("Sent for approval" in m for m in messages_of(response)), messages_of(response)
    fresh = Brand.objects.get(pk=brand.pk)
    assert (fresh.bank_account, fresh.name) == (old_account, "Renamed brand")
    filed = ApprovalRequest.objects.get()
    assert filed.payload == {
        "brand": brand.pk,
        "changes": {"bank_account": "40702810900000000999"},
        "previous": {"bank_account": old_account},
    }
    unchanged = change(client, brand, name="Renamed again")
    assert not any("Sent for approval" in m for m in messages_of(unchanged))
    assert ApprovalRequest.objects.count() == 1
    bad = change(client, brand, bank_bik="12")
    assert bad.context["adminform"].form.errors["bank_bik"]
    client.force_login(checker)
    decide(client, "approve_requests", filed.pk)
    assert Brand.objects.get(pk=brand.pk).bank_account == "40702810900000000999"
