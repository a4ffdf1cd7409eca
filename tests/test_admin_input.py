"""Staff input refuses text the database cannot store: NUL characters and unpaired surrogates
are a form error on the field (change forms, the posting form, action reasons, JSON fields),
clear the changelist's search and filters with a message, find nothing in autocomplete, and
make an imported row invalid in the dry run. Never a 500, and nothing changes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django import forms
from django.contrib import admin as django_admin
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import RequestFactory
from django.urls import reverse

from accounts.admin import ClientAdmin
from accounts.models import Account, Client
from billing_site.admin import BillingAdminSite
from brands.models import Brand
from core.forms import TextGuardedAdmin, TextGuardedForm
from core.validators import inn_complete
from ledger import services
from ledger.models import Transaction
from tests.factories import AccountFactory, BrandFactory
from tests.test_admin import CSV_HEADER, _change, _changelist, _csv_format_index, _messages

pytestmark = pytest.mark.django_db


@pytest.fixture
def account():
    account = AccountFactory(brands=[BrandFactory()])
    services.payment_post(account=account, amount=Decimal("100.00"), channel="bank")
    account.refresh_from_db()
    return account


def _client_form(holder, account, **changes):
    return {
        "kind": holder.kind,
        "name": holder.name,
        "legal_name": "",
        "status": holder.status,
        "tax_id": holder.tax_id,
        "kpp": "",
        "ogrn": "",
        "email": holder.email,
        "phone": holder.phone,
        "address": "",
        "external_ref": "",
        "accounts-TOTAL_FORMS": "1",
        "accounts-INITIAL_FORMS": "1",
        "accounts-MIN_NUM_FORMS": "0",
        "accounts-MAX_NUM_FORMS": "0",
        "accounts-0-id": account.pk,
        "accounts-0-client": holder.pk,
        **changes,
    }


def test_the_admin_site_guards_every_registered_model_admin():
    assert isinstance(django_admin.site, BillingAdminSite)
    unguarded = [
        model for model, ma in django_admin.site._registry.items()
        if not isinstance(ma, TextGuardedAdmin)
    ]  # fmt: skip
    assert not unguarded
    assert {Client, Account, Transaction, Brand} <= set(django_admin.site._registry)


def test_every_admin_form_is_guarded(admin_user, account):
    request = RequestFactory().get("/admin/")
    request.user = admin_user
    checked = 0
    for model, model_admin in django_admin.site._registry.items():
        if not model_admin.has_add_permission(request):
            continue  # read-only pages: no form to fill
        form = model_admin.get_form(request, None, change=False)
        assert issubclass(form, TextGuardedForm), model
        checked += 1
    assert checked >= 5
    client_admin = django_admin.site._registry[Client]
    for formset, _ in client_admin.get_formsets_with_inlines(request, account.client):
        assert issubclass(formset.form, TextGuardedForm)


@pytest.mark.parametrize("bad", ["Ива\x00нов", "x" * 301])
def test_a_client_change_form_with_a_nul_or_over_long_name_is_a_form_error(
    admin_client, account, bad
):
    holder = account.client
    before = Client.objects.filter(pk=holder.pk).values().get()
    response = admin_client.post(_change(holder), _client_form(holder, account, name=bad))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors.as_data()
    codes = {error.code for error in errors["name"]}
    assert codes & {"null_characters_not_allowed", "max_length"}
    assert Client.objects.filter(pk=holder.pk).values().get() == before


def test_an_account_change_form_with_a_nul_is_a_form_error(admin_client, account):
    before = Account.objects.filter(pk=account.pk).values().get()
    data = {
        "parent": "",
        "name": "Main\x00",
        "brands": [b.pk for b in account.brands.all()],
        "credit_limit": "0.00",
        "credit_period_days": "",
        "credit_expires_at": "",
        "write_off_limit_transaction": "",
        "write_off_limit_day": "",
        "write_off_limit_month": "",
    }
    response = admin_client.post(_change(account), data)
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert [e.code for e in form.errors.as_data()["name"]] == ["null_characters_not_allowed"]
    assert Account.objects.filter(pk=account.pk).values().get() == before


def test_the_posting_form_refuses_a_nul_in_the_memo(admin_client, account):
    url = reverse("admin:accounts_account_post", args=[account.pk])
    key = admin_client.get(url).context["form"].initial["idempotency_key"]
    before = Transaction.objects.count()
    response = admin_client.post(
        url,
        {
            "operation": "payment",
            "amount": "10.00",
            "channel": "bank",
            "memo": "paid\x00",
            "idempotency_key": key,
        },
    )
    assert response.status_code == 200
    assert "memo" in response.context["form"].errors
    assert Transaction.objects.count() == before


def test_an_action_reason_with_a_nul_is_asked_again(admin_client, account):
    response = admin_client.post(
        _changelist(Account),
        {
            "action": "block_accounts",
            "_selected_action": [account.pk],
            "apply": "1",
            "reason": "lost\x00",
        },
    )
    assert response.status_code == 200
    assert "reason" in response.context["form"].errors
    account.refresh_from_db()
    assert account.status == Account.Status.OPEN


def test_search_and_filters_with_a_nul_are_cleared_with_a_message(admin_client, account):
    for url in [
        _changelist(Client) + "?q=%00",
        _changelist(Account) + "?status=%00",
        _changelist(Transaction) + "?kind__exact=open%00",
        _changelist(Transaction) + "?q=12%00",
    ]:
        response = admin_client.get(url)
        assert response.status_code == 302, url
        assert response["Location"] == url.split("?")[0]
        shown = admin_client.get(response["Location"])
        assert any("NUL characters" in m for m in _messages(shown)), url


def test_autocomplete_with_a_nul_finds_nothing(admin_client, account):
    response = admin_client.get(
        reverse("admin:autocomplete"),
        {"term": "a\x00", "app_label": "accounts", "model_name": "account", "field_name": "parent"},
    )
    assert response.status_code == 200
    assert response.json()["results"] == []


def test_a_spreadsheet_row_with_a_nul_is_an_invalid_row_in_the_dry_run(admin_client):
    good_inn = inn_complete("7701000001")
    content = CSV_HEADER + (
        f"individual,Петров Пётр,,{good_inn},,,petrov@example.com,+79990000001,,EXT-1,active\n"
        f"individual,Сидо\x00ров,,{inn_complete('7701000002')},,,s@example.com,+79990000002,,"
        "EXT-2,active\n"
    )
    upload = SimpleUploadedFile("clients.csv", content.encode(), content_type="text/csv")
    response = admin_client.post(
        reverse("admin:accounts_client_import"),
        {"import_file": upload, "format": _csv_format_index(ClientAdmin, Client), "resource": "0"},
    )
    assert response.status_code == 200
    result = response.context["result"]
    assert not result.has_errors() and result.has_validation_errors()
    (invalid,) = result.invalid_rows
    assert invalid.number == 2
    assert invalid.error_dict == {"name": ["Null characters are not allowed."]}
    assert not Client.objects.filter(external_ref__in=["EXT-1", "EXT-2"]).exists()


class _JsonForm(TextGuardedForm, forms.Form):
    data = forms.JSONField()
    brand = forms.ModelChoiceField(queryset=Brand.objects.all(), to_field_name="code")
    note = forms.CharField(widget=forms.Textarea)


def test_json_and_lookup_fields_are_guarded_too():
    """A JSON field reads "\\u0000" into a NUL (Django's validator does not see it); a model
    choice by text would look a NUL up in the database; a textarea is a CharField."""
    brand = BrandFactory()
    good = {"data": '{"a": "b"}', "brand": brand.code, "note": "ok"}
    assert _JsonForm(good).is_valid()
    for field, value in [
        ("data", '{"a": "\\u0000"}'),
        ("data", '{"\\u0000": 1}'),
        ("data", '["\\ud800"]'),
        ("brand", f"{brand.code}\x00"),
        ("note", "two\nlines\x00"),
        ("note", "lone \ud800 surrogate"),
    ]:
        form = _JsonForm({**good, field: value})
        assert not form.is_valid(), (field, value)
        (error,) = form.errors.as_data()[field]
        assert error.code in {"null_characters_not_allowed", "surrogate_characters_not_allowed"}
