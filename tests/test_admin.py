"""The Django admin: every page renders, search finds, ledger rows are read-only, and every
money or status change goes through the services (refusals are messages, never 500s)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib import admin as django_admin
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone
from import_export.forms import SelectableFieldsExportForm

from accounts.admin import AccountAdmin, AccountResource, ClientAdmin
from accounts.models import Account, Client
from core.validators import account_number_is_valid, inn_complete
from demo.users import demo_users_ensure
from ledger import services
from ledger.models import Entry, Hold, IdempotencyKey, Transaction
from tests.factories import (
    AccountFactory,
    BrandFactory,
    ClientFactory,
    LegalEntityFactory,
    ServiceFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def brand():
    return BrandFactory()


@pytest.fixture
def service(brand):
    return ServiceFactory(brand=brand)


@pytest.fixture
def account(brand):
    account = AccountFactory(brands=[brand])
    services.payment_post(account=account, amount=Decimal("100.00"), channel="bank")
    account.refresh_from_db()
    return account


@pytest.fixture
def ledger_rows(account, brand, service):
    """One of each ledger row: a payment with an idempotency key, a debit, a reversal, holds."""
    company = AccountFactory(client=LegalEntityFactory(), brands=[brand], credit_limit=1000)
    employee = AccountFactory(brands=[brand])
    employee.parent = company
    employee.save(update_fields=["parent"])
    payment = services.payment_post(
        account=account, amount="50.00", channel="card", idempotency_key="admin-test-1"
    )
    debit = services.debit_post(account=employee, amount="20.00", brand=brand, service=service)
    reversal = services.transaction_reverse(transaction_obj=debit, reason="wrong order")
    hold = services.hold_create(account=account, amount="10.00", brand=brand, service=service)
    return {
        "payment": payment,
        "debit": debit,
        "reversal": reversal,
        "hold": hold,
        "company": company,
        "employee": employee,
    }


def _changelist(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def _change(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def _staff(*codenames: str):
    """A staff user with just these permissions (the factory sets the password after saving)."""
    user = UserFactory(is_staff=True)
    user.save()
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


# --------------------------------------------------------------------------- pages


def test_admin_every_registered_model_changelist_and_change_page_render(
    admin_client, ledger_rows, account, service
):
    clearing = Account.objects.filter(kind=Account.Kind.CLEARING).first()
    objects = [
        service.brand,
        service,
        account.client,
        account,
        ledger_rows["employee"],
        clearing,
        ledger_rows["payment"],
        ledger_rows["reversal"],
        Entry.objects.filter(transaction=ledger_rows["debit"]).first(),
        ledger_rows["hold"],
        IdempotencyKey.objects.get(key="admin-test-1"),
    ]
    for obj in objects:
        listing = admin_client.get(_changelist(type(obj)))
        assert listing.status_code == 200, type(obj)
        page = admin_client.get(_change(obj))
        assert page.status_code == 200, obj
    account_page = admin_client.get(_change(account)).content.decode()
    assert account.number in account_page
    assert reverse("admin:accounts_account_post", args=[account.pk]) in account_page
    reversal_page = admin_client.get(_change(ledger_rows["debit"])).content.decode()
    assert (
        f"reversed by #{ledger_rows['reversal'].pk}" in reversal_page
        or str(ledger_rows["reversal"]) in reversal_page
    )
    for model in (Client, Account):
        add = admin_client.get(reverse(f"admin:accounts_{model._meta.model_name}_add"))
        assert add.status_code == 200
    assert admin_client.get(reverse("admin:index")).status_code == 200


def test_root_is_the_staff_ui_behind_its_login_page(client, admin_client):
    """The staff UI took the root (tests/backoffice); the admin stays at /admin/."""
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next=/"
    assert admin_client.get("/").status_code == 200


def test_admin_search_finds_account_by_number_and_client_by_tax_id(admin_client, brand):
    first = AccountFactory(brands=[brand])
    second = AccountFactory(brands=[brand])
    response = admin_client.get(_changelist(Account), {"q": first.number})
    assert response.status_code == 200
    found = list(response.context["cl"].result_list)
    assert found == [first]
    by_tax_id = admin_client.get(_changelist(Account), {"q": second.client.tax_id})
    assert list(by_tax_id.context["cl"].result_list) == [second]
    clients = admin_client.get(_changelist(Client), {"q": first.client.tax_id})
    assert list(clients.context["cl"].result_list) == [first.client]
    by_account_number = admin_client.get(_changelist(Client), {"q": second.number})
    assert list(by_account_number.context["cl"].result_list) == [second.client]
    phone = second.client.phone  # +7999...: typed as 8 999 ...
    by_phone = admin_client.get(_changelist(Client), {"q": "8" + phone[2:]})
    assert list(by_phone.context["cl"].result_list) == [second.client]
    by_name = admin_client.get(_changelist(Client), {"q": first.client.name.split()[-1]})
    assert first.client in list(by_name.context["cl"].result_list)


def test_admin_transaction_search_by_account_number(admin_client, ledger_rows, account):
    response = admin_client.get(_changelist(Transaction), {"q": account.number})
    found = set(response.context["cl"].result_list)
    assert ledger_rows["payment"] in found
    assert ledger_rows["debit"] not in found


def test_admin_number_search_by_id_and_subject_on_transactions_and_holds(
    admin_client, ledger_rows, account, brand
):
    from ledger.models import Hold

    order = services.debit_post(
        account=account, amount="1.00", brand=brand, subject_type="order", subject_id="81723"
    )
    by_subject = admin_client.get(_changelist(Transaction), {"q": "81723"})
    assert list(by_subject.context["cl"].result_list) == [order]
    by_id = admin_client.get(_changelist(Transaction), {"q": str(ledger_rows["debit"].pk)})
    assert ledger_rows["debit"] in set(by_id.context["cl"].result_list)
    hold = ledger_rows["hold"]
    holds = admin_client.get(_changelist(Hold), {"q": str(hold.pk)})
    assert list(holds.context["cl"].result_list) == [hold]
    by_number = admin_client.get(_changelist(Hold), {"q": account.number})
    assert list(by_number.context["cl"].result_list) == [hold]


# --------------------------------------------------------------------------- read-only ledger


@pytest.mark.parametrize("key", ["payment", "hold"])
def test_admin_ledger_rows_cannot_be_added_changed_or_deleted(admin_client, ledger_rows, key):
    obj = ledger_rows[key]
    model = type(obj)
    before = model.objects.count()
    meta = model._meta
    add = admin_client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_add"))
    assert add.status_code == 403
    change = admin_client.post(_change(obj), {"amount": "1.00"})
    assert change.status_code == 403
    delete = admin_client.post(
        reverse(f"admin:{meta.app_label}_{meta.model_name}_delete", args=[obj.pk]), {"post": "yes"}
    )
    assert delete.status_code == 403
    assert model.objects.count() == before
    obj.refresh_from_db()
    assert obj.amount == ledger_rows[key].amount
    for model in (Transaction, Entry, Hold, IdempotencyKey):
        page = admin_client.get(_changelist(model))
        assert page.context["has_add_permission"] is False


# --------------------------------------------------------------------------- accounts


def test_admin_block_action_asks_for_reason_then_calls_the_service(
    admin_client, admin_user, account
):
    url = _changelist(Account)
    asked = admin_client.post(url, {"action": "block_accounts", "_selected_action": [account.pk]})
    assert asked.status_code == 200
    assert "reason" in asked.context["form"].fields
    account.refresh_from_db()
    assert account.status == Account.Status.OPEN

    empty = admin_client.post(
        url,
        {"action": "block_accounts", "_selected_action": [account.pk], "apply": "1", "reason": " "},
    )
    assert empty.status_code == 200
    assert empty.context["form"].errors
    account.refresh_from_db()
    assert account.status == Account.Status.OPEN

    done = admin_client.post(
        url,
        {
            "action": "block_accounts",
            "_selected_action": [account.pk],
            "apply": "1",
            "reason": "Card lost",
        },
        follow=True,
    )
    assert done.status_code == 200
    account.refresh_from_db()
    assert account.status == Account.Status.BLOCKED
    assert account.status_reason == "Card lost"
    assert account.status_changed_by == admin_user

    again = admin_client.post(
        url,
        {
            "action": "block_accounts",
            "_selected_action": [account.pk],
            "apply": "1",
            "reason": "twice",
        },
        follow=True,
    )
    assert any("invalid_status_transition" in m for m in _messages(again))
    account.refresh_from_db()
    assert account.status_reason == "Card lost"

    admin_client.post(url, {"action": "unblock_accounts", "_selected_action": [account.pk]})
    account.refresh_from_db()
    assert account.status == Account.Status.OPEN


def test_admin_block_action_needs_the_block_permission(client, account):
    client.force_login(_staff("view_account", "change_account"))
    response = client.post(
        _changelist(Account),
        {"action": "block_accounts", "_selected_action": [account.pk], "apply": "1", "reason": "x"},
    )
    assert response.status_code == 200  # the action is not offered: the list is shown again
    account.refresh_from_db()
    assert account.status == Account.Status.OPEN


def test_admin_account_add_goes_through_account_create(admin_client, brand):
    holder = ClientFactory()
    response = admin_client.post(
        reverse("admin:accounts_account_add"),
        {
            "client": holder.pk,
            "currency": "RUB",
            "name": "Main",
            "brands": [brand.pk],
            "credit_limit": "500.00",
            "credit_period_days": "30",
        },
    )
    assert response.status_code == 302, response.context and response.context["adminform"].errors
    created = Account.objects.get(client=holder)
    assert account_number_is_valid(created.number)
    assert created.credit_limit == Decimal("500.00")
    assert list(created.brands.all()) == [brand]
    assert created.balance == 0


def _account_form(account: Account, **changes) -> dict:
    data = {
        "parent": account.parent_id or "",
        "name": account.name,
        "brands": [b.pk for b in account.brands.all()],
        "credit_limit": str(account.credit_limit),
        "credit_period_days": account.credit_period_days or "",
        "credit_expires_at": account.credit_expires_at or "",
        "write_off_limit_transaction": account.write_off_limit_transaction or "",
        "write_off_limit_day": account.write_off_limit_day or "",
        "write_off_limit_month": account.write_off_limit_month or "",
    }
    data.update(changes)
    return data


def test_admin_account_limits_change_goes_through_account_update(admin_client, ledger_rows):
    employee = ledger_rows["employee"]
    response = admin_client.post(
        _change(employee), _account_form(employee, write_off_limit_day="300")
    )
    assert response.status_code == 302
    employee.refresh_from_db()
    assert employee.write_off_limit_day == Decimal("300.00")

    refused = admin_client.post(
        _change(employee), _account_form(employee, credit_limit="1000.00"), follow=True
    )
    assert refused.status_code == 200
    assert any("invalid_account_structure" in m for m in _messages(refused))
    employee.refresh_from_db()
    assert employee.credit_limit == Decimal("0.00")
    assert employee.write_off_limit_day == Decimal("300.00")


def test_admin_client_change_goes_through_client_update(admin_client, account):
    holder = account.client
    data = {
        "kind": holder.kind,
        "name": "Иванов Иван Иванович",
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
    }
    response = admin_client.post(_change(holder), data)
    assert response.status_code == 302, response.context and response.context["adminform"].errors
    holder.refresh_from_db()
    assert holder.name == "Иванов Иван Иванович"
    bad = admin_client.post(_change(holder), {**data, "tax_id": "1234567890"})
    assert bad.status_code == 200  # the form shows the INN error
    holder.refresh_from_db()
    assert holder.tax_id != "1234567890"


# --------------------------------------------------------------------------- posting form


def _post_form(admin_client, account, **data):
    url = reverse("admin:accounts_account_post", args=[account.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    key = page.context["form"].initial["idempotency_key"]
    payload = {"idempotency_key": key, "channel": "bank", "memo": "", **data}
    return admin_client.post(url, payload, follow=True), payload


def test_admin_payment_form_posts_through_the_service_once(admin_client, admin_user, account):
    before = Transaction.objects.count()
    response, payload = _post_form(admin_client, account, operation="payment", amount="150.00")
    assert response.status_code == 200
    account.refresh_from_db()
    assert account.balance == Decimal("250.00")
    txn = Transaction.objects.latest("id")
    assert txn.kind == "payment" and txn.amount == Decimal("150.00")
    assert txn.created_by == admin_user and txn.caller == f"user:{admin_user.pk}"
    assert Transaction.objects.count() == before + 1
    # The same form submitted again (double click) posts nothing new.
    url = reverse("admin:accounts_account_post", args=[account.pk])
    replay = admin_client.post(url, payload, follow=True)
    assert any("already posted" in m for m in _messages(replay))
    account.refresh_from_db()
    assert account.balance == Decimal("250.00")
    assert Transaction.objects.count() == before + 1


def test_admin_posting_refusal_is_a_message_and_changes_nothing(admin_client, account, brand):
    before = Transaction.objects.count()
    response, _ = _post_form(
        admin_client, account, operation="debit", amount="100.01", brand=brand.pk
    )
    assert response.status_code == 200
    assert any("insufficient_funds" in m for m in _messages(response))
    account.refresh_from_db()
    assert account.balance == Decimal("100.00")
    assert Transaction.objects.count() == before


def test_admin_adjustment_and_debit_through_the_form(admin_client, account, brand, service):
    # An adjustment waits for a second person (tests/approvals): nothing is posted yet.
    filed, _ = _post_form(
        admin_client, account, operation="adjustment_debit", amount="30.00", memo="fix"
    )
    assert any("Sent for approval" in m for m in _messages(filed))
    account.refresh_from_db()
    assert account.balance == Decimal("100.00")
    assert not Transaction.objects.filter(kind="adjustment").exists()
    missing_reason, _ = _post_form(admin_client, account, operation="adjustment_credit", amount="5")
    assert missing_reason.context["form"].errors["memo"]
    _post_form(
        admin_client, account, operation="debit", amount="20.00", brand=brand.pk, service=service.pk
    )
    account.refresh_from_db()
    assert account.balance == Decimal("80.00")
    assert Transaction.objects.latest("id").service == service


def test_admin_posting_needs_permission(client, account):
    client.force_login(_staff("view_account"))
    url = reverse("admin:accounts_account_post", args=[account.pk])
    assert client.get(url).status_code == 403
    assert "Post payment" not in client.get(_change(account)).content.decode()


# --------------------------------------------------------------------------- ledger actions


def test_admin_reverse_action_calls_transaction_reverse_once(admin_client, ledger_rows, account):
    payment = ledger_rows["payment"]
    url = _changelist(Transaction)
    data = {"action": "reverse_transactions", "_selected_action": [payment.pk], "apply": "1"}
    admin_client.post(url, {**data, "reason": "Paid to the wrong account"}, follow=True)
    reversal = Transaction.objects.get(reversal_of=payment)
    assert reversal.memo == "Paid to the wrong account"
    account.refresh_from_db()
    assert account.balance == Decimal("100.00")  # 100 + 50 - 50; the 10 hold is not a posting
    again = admin_client.post(url, {**data, "reason": "again"}, follow=True)
    assert any("already_reversed" in m for m in _messages(again))
    assert Transaction.objects.filter(reversal_of=payment).count() == 1


def test_admin_hold_void_and_capture_actions(admin_client, ledger_rows, account, brand):
    hold = ledger_rows["hold"]
    other = services.hold_create(account=account, amount="5.00", brand=brand)
    url = _changelist(Hold)
    admin_client.post(url, {"action": "void_holds", "_selected_action": [hold.pk]})
    hold.refresh_from_db()
    assert hold.status == Hold.Status.VOIDED
    admin_client.post(url, {"action": "capture_holds", "_selected_action": [other.pk]})
    other.refresh_from_db()
    assert other.status == Hold.Status.CAPTURED
    assert Transaction.objects.filter(hold=other, kind="hold_capture").count() == 1
    refused = admin_client.post(
        url, {"action": "capture_holds", "_selected_action": [hold.pk]}, follow=True
    )
    assert any("hold_not_active" in m for m in _messages(refused))
    account.refresh_from_db()
    assert account.held == 0
    assert account.balance == Decimal("145.00")


# --------------------------------------------------------------------------- import / export


def _csv_format_index(model_admin_class, model) -> str:
    formats = model_admin_class(model, django_admin.site).get_import_formats()
    return str(next(i for i, f in enumerate(formats) if f().get_title() == "csv"))


CSV_HEADER = "kind,name,legal_name,tax_id,kpp,ogrn,email,phone,address,external_ref,status\n"


def test_admin_client_import_reports_bad_inn_and_imports_nothing(admin_client):
    good_inn = inn_complete("7701000001")
    content = CSV_HEADER + (
        f"individual,Петров Пётр Петрович,,{good_inn},,,petrov@example.com,+79990000001,,"
        "EXT-1,active\n"
        "individual,Сидоров Сидор,,123456789012,,,sidorov@example.com,+79990000002,,EXT-2,active\n"
    )
    upload = SimpleUploadedFile("clients.csv", content.encode(), content_type="text/csv")
    response = admin_client.post(
        reverse("admin:accounts_client_import"),
        {"import_file": upload, "format": _csv_format_index(ClientAdmin, Client), "resource": "0"},
    )
    assert response.status_code == 200
    result = response.context["result"]
    assert result.has_validation_errors()
    invalid = {row.number: row for row in result.invalid_rows}
    assert set(invalid) == {2}
    assert "tax_id" in invalid[2].error_dict
    assert "confirm_form" not in response.context or response.context["confirm_form"] is None
    assert not Client.objects.filter(external_ref__in=["EXT-1", "EXT-2"]).exists()


def test_admin_client_import_creates_clients_through_the_service(admin_client):
    content = CSV_HEADER + (
        f"legal_entity,ООО Ромашка,Общество «Ромашка»,{inn_complete('770100001')},770101001,,"
        "info@romashka.ru,+79990000003,,EXT-3,active\n"
    )
    upload = SimpleUploadedFile("clients.csv", content.encode(), content_type="text/csv")
    preview = admin_client.post(
        reverse("admin:accounts_client_import"),
        {"import_file": upload, "format": _csv_format_index(ClientAdmin, Client), "resource": "0"},
    )
    assert not preview.context["result"].has_validation_errors()
    assert not Client.objects.filter(external_ref="EXT-3").exists()  # a dry run so far
    confirm = preview.context["confirm_form"]
    done = admin_client.post(reverse("admin:accounts_client_process_import"), confirm.initial)
    assert done.status_code == 302
    created = Client.objects.get(external_ref="EXT-3")
    assert created.kind == Client.Kind.LEGAL_ENTITY
    assert created.tax_id == inn_complete("770100001")


def test_admin_account_export_includes_balances(admin_client, account):

    formats = AccountAdmin(Account, django_admin.site).get_export_formats()
    csv_index = next(i for i, f in enumerate(formats) if f().get_title() == "csv")
    fields = {
        SelectableFieldsExportForm.create_boolean_field_name(AccountResource, name): "on"
        for name in AccountResource().get_export_order()
    }
    response = admin_client.post(
        reverse("admin:accounts_account_export"),
        {"format": str(csv_index), "resource": "0", **fields},
    )
    assert response.status_code == 200
    assert not response.context or not response.context["form"].errors
    body = b"".join(response.streaming_content if response.streaming else [response.content])
    text = body.decode("utf-8-sig")
    header, *rows = text.strip().splitlines()
    assert "balance" in header and "available" in header
    line = next(row for row in rows if account.number in row)
    assert "100.00" in line


def test_admin_hold_page_shows_expiry(admin_client, account, brand):
    hold = services.hold_create(
        account=account,
        amount="1.00",
        brand=brand,
        expires_at=timezone.now() + timedelta(days=1),
    )
    response = admin_client.get(_change(hold))
    assert response.status_code == 200
    assert account.number in response.content.decode()


def test_admin_demo_operator_can_view_post_and_block_but_not_edit_ledger(client, account):
    operator = demo_users_ensure().operator
    client.force_login(operator)
    page = client.get(_change(account))
    assert page.status_code == 200
    assert "Post payment" in page.content.decode()
    assert client.get(_changelist(Transaction)).status_code == 200
    _post_form(client, account, operation="payment", amount="10.00")
    account.refresh_from_db()
    assert account.balance == Decimal("110.00")
    client.post(
        _changelist(Account),
        {"action": "block_accounts", "_selected_action": [account.pk], "apply": "1", "reason": "x"},
    )
    account.refresh_from_db()
    assert account.status == Account.Status.BLOCKED
    txn = Transaction.objects.latest("id")
    assert client.post(_change(txn), {"memo": "edited"}).status_code == 403
