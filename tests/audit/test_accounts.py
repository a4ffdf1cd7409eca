"""The audit trail of accounts and clients: one event per real change, old and new values,
the actor and the time, whichever way the change came (service, admin, API, raw SQL); nothing
for an update that changes no audited field, nor for postings."""

from decimal import Decimal

import pytest
from django.db import InternalError, ProgrammingError, connection, transaction
from django.urls import reverse

from accounts.models import Account, AccountEvent, Client, ClientEvent
from accounts.services import (
    account_block,
    account_numbers_allocate,
    account_set_parent,
    account_update,
    client_update,
)
from core.audit.context import acting
from core.caller import Caller
from ledger.services import debit_post, hold_create, payment_post
from tests.api.helpers import post
from tests.audit.conftest import admin_form_data, metadata, written
from tests.factories import AccountFactory, BrandFactory, ClientFactory, ServiceFactory

pytestmark = pytest.mark.django_db


def _change_url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


@pytest.fixture
def account():
    return AccountFactory(brands=[BrandFactory()])


# --------------------------------------------------------------------------- services


def test_account_limit_change_through_a_service_names_the_caller(account):
    with written() as w, acting(Caller.system("limits_review")):
        account_update(account=account, credit_limit=Decimal("500.00"), write_off_limit_day="50")
    event = w.only(AccountEvent)
    assert event.pgh_obj_id == account.pk
    assert event.pgh_diff == {
        "credit_limit": ["0.00", "500.00"],
        "write_off_limit_day": [None, "50.00"],
    }
    assert event.credit_limit == Decimal("500.00")  # the row after the change
    assert metadata(event)["actor"] == "system:limits_review"


def test_account_block_through_the_service_records_reason_and_user(account, staff_user):
    with written() as w:
        account_block(account=account, reason="Card lost", blocked_by=staff_user)
    event = w.only(AccountEvent)
    assert event.pgh_diff == {"status": ["open", "blocked"], "status_reason": ["", "Card lost"]}
    assert metadata(event)["actor"] == f"user:{staff_user.pk}"
    assert metadata(event)["user"] == staff_user.pk


def test_account_parent_change_is_recorded(account):
    payer = AccountFactory()
    with written() as w, acting(Caller.system("restructure")):
        account_set_parent(account=account, parent=payer)
    event = w.only(AccountEvent)
    assert event.pgh_diff == {"parent": [None, str(payer.pk)]}


def test_client_identity_change_through_a_service(staff_user):
    holder = ClientFactory(email="old@example.com", phone="+79990000001")
    with written() as w, acting(user=staff_user):
        client_update(client=holder, email="new@example.com", phone="+79990000002")
    event = w.only(ClientEvent)
    assert event.pgh_diff == {
        "email": ["old@example.com", "new@example.com"],
        "phone": ["+79990000001", "+79990000002"],
    }
    assert metadata(event)["actor"] == f"user:{staff_user.pk}"


def test_an_outer_actor_is_kept_by_a_service_that_names_its_own(account, staff_user):
    with written() as w, acting(Caller.system("nightly_checks")):
        account_block(account=account, reason="Overdue", blocked_by=staff_user)
    assert metadata(w.only(AccountEvent))["actor"] == "system:nightly_checks"


# --------------------------------------------------------------------------- nothing to record


def test_an_update_that_changes_no_audited_field_writes_nothing(account):
    holder = account.client
    with written() as w:
        account_update(account=account, credit_limit=account.credit_limit, name=account.name)
        client_update(client=holder, email=holder.email)
        Account.objects.filter(pk=account.pk).update(spent_day=Decimal("1.00"))
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE accounts_account SET updated_at = now(), negative_since = NULL"
                " WHERE id = %s",
                [account.pk],
            )
            cursor.execute(
                "UPDATE accounts_client SET updated_at = now() WHERE id = %s", [holder.pk]
            )
    assert w.total == 0


def test_postings_write_no_audit_event(account):
    brand = account.brands.get()
    service = ServiceFactory(brand=brand)
    account_update(account=account, credit_limit=Decimal("100.00"))
    # The first postings open the system accounts (clearing, revenue): those are recorded.
    payment_post(account=account, amount="1.00", channel="bank")
    debit_post(account=account, amount="1.00", brand=brand, service=service)
    with written() as w:
        payment_post(account=account, amount="300.00", channel="bank")
        debit_post(account=account, amount="350.00", brand=brand, service=service)
        hold_create(account=account, amount="10.00", brand=brand, service=service)
    account.refresh_from_db()
    assert account.balance == Decimal("-50.00") and account.negative_since is not None
    assert account.held == Decimal("10.00")
    assert w.total == 0


# --------------------------------------------------------------------------- raw SQL


def test_raw_sql_bypassing_django_is_recorded_with_the_database_role(account):
    with written() as w, connection.cursor() as cursor:
        cursor.execute(
            "UPDATE accounts_account SET credit_limit = 750, balance = balance WHERE id = %s",
            [account.pk],
        )
    event = w.only(AccountEvent)
    assert event.pgh_diff == {"credit_limit": ["0.00", "750.00"]}
    assert event.pgh_context_id is None  # no application context: nobody named an actor
    with connection.cursor() as cursor:
        cursor.execute("SELECT session_user")
        assert event.pgh_db_user == cursor.fetchone()[0]


def test_raw_sql_inside_an_audit_context_names_the_actor(account):
    with written() as w, acting(Caller.system("data_fix_1234")), connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_client SET tax_id = '' WHERE id = %s", [account.client_id])
    event = w.only(ClientEvent)
    assert event.pgh_diff["tax_id"][1] == ""
    assert metadata(event)["actor"] == "system:data_fix_1234"


def test_audit_events_cannot_be_changed_or_deleted(account):
    with acting(Caller.system("test")):
        account_update(account=account, credit_limit=Decimal("10.00"))
    event = AccountEvent.objects.filter(pgh_obj_id=account.pk, pgh_label="change").get()

    for statement in (
        "UPDATE accounts_accountevent SET pgh_diff = '{}' WHERE pgh_id = %s",
        "DELETE FROM accounts_accountevent WHERE pgh_id = %s",
    ):
        with (
            pytest.raises((InternalError, ProgrammingError)),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement, [event.pgh_id])
    assert AccountEvent.objects.filter(pgh_id=event.pgh_id).exists()


# --------------------------------------------------------------------------- the admin


def test_account_limits_change_through_the_admin(staff, account):
    page = staff.get(_change_url(account))
    data = admin_form_data(page) | {"credit_limit": "1500.00", "write_off_limit_month": "900"}
    with written() as w:
        response = staff.post(_change_url(account), data, HTTP_X_REQUEST_ID="req-admin-1")
    assert response.status_code == 302, response.context and response.context["adminform"].errors
    event = w.only(AccountEvent)
    assert event.pgh_diff == {
        "credit_limit": ["0.00", "1500.00"],
        "write_off_limit_month": [None, "900.00"],
    }
    context = metadata(event)
    assert context["actor"] == f"user:{staff.user.pk}"
    assert context["username"] == "auditor"
    assert context["request_id"] == "req-admin-1"
    assert context["path"] == _change_url(account)


def test_account_block_through_the_admin_action_records_the_reason(staff, account):
    with written() as w:
        staff.post(
            reverse("admin:accounts_account_changelist"),
            {
                "action": "block_accounts",
                "_selected_action": [account.pk],
                "apply": "1",
                "reason": "Court order 12/34",
            },
        )
    event = w.only(AccountEvent)
    assert event.pgh_diff == {
        "status": ["open", "blocked"],
        "status_reason": ["", "Court order 12/34"],
    }
    assert metadata(event)["actor"] == f"user:{staff.user.pk}"


def test_client_identity_change_through_the_admin(staff, account):
    holder = account.client
    page = staff.get(_change_url(holder))
    data = admin_form_data(page) | {"email": "changed@example.com", "phone": "+79991112233"}
    with written() as w:
        response = staff.post(_change_url(holder), data)
    assert response.status_code == 302, response.context and response.context["adminform"].errors
    event = w.only(ClientEvent)
    assert event.pgh_diff == {
        "email": [holder.email, "changed@example.com"],
        "phone": [holder.phone, "+79991112233"],
    }
    assert metadata(event)["actor"] == f"user:{staff.user.pk}"


# --------------------------------------------------------------------------- the API


def test_account_patch_through_the_api_names_partner_and_key(side):
    account = side.account
    with written() as w:
        response = side.api.patch(
            f"/api/v1/accounts/{account.pk}/",
            {"credit_limit": "250.00", "credit_period_days": 15},
            format="json",
            HTTP_X_REQUEST_ID="req-api-7",
        )
    assert response.status_code == 200, response.json()
    event = w.only(AccountEvent)
    assert event.pgh_diff == {
        "credit_limit": ["0.00", "250.00"],
        "credit_period_days": [None, "15"],
    }
    context = metadata(event)
    key = side.partner.api_keys.get()
    assert context["actor"] == f"partner:{side.partner.pk}"
    assert (context["partner"], context["api_key"]) == (side.partner.pk, key.pk)
    assert context["partner_name"] == "Audit Partner"
    assert context["request_id"] == "req-api-7" == response["X-Request-ID"]
    assert "user" not in context


def test_account_patch_through_the_api_by_a_staff_session(staff, side):
    account = side.account
    with written() as w:
        response = staff.patch(
            f"/api/v1/accounts/{account.pk}/",
            {"write_off_limit_transaction": "75.00"},
            content_type="application/json",
        )
    assert response.status_code == 200, response.json()
    event = w.only(AccountEvent)
    assert event.pgh_diff == {"write_off_limit_transaction": [None, "75.00"]}
    assert metadata(event)["actor"] == f"user:{staff.user.pk}"
    assert metadata(event)["request_id"] == response["X-Request-ID"]


def test_account_block_through_the_api_records_reason_and_partner(side):
    with written() as w:
        response = post(
            side.api, f"/api/v1/accounts/{side.account.pk}/block/", {"reason": "Chargeback"}
        )
    assert response.status_code == 200, response.json()
    event = w.only(AccountEvent)
    assert event.pgh_diff == {"status": ["open", "blocked"], "status_reason": ["", "Chargeback"]}
    assert metadata(event)["actor"] == f"partner:{side.partner.pk}"


def test_client_patch_through_the_api_by_partner_and_by_staff(side, staff):
    holder = side.account.client
    with written() as w:
        response = side.api.patch(
            f"/api/v1/clients/{holder.pk}/", {"email": "partner@example.com"}, format="json"
        )
    assert response.status_code == 200, response.json()
    event = w.only(ClientEvent)
    assert event.pgh_diff == {"email": [holder.email, "partner@example.com"]}
    assert metadata(event)["actor"] == f"partner:{side.partner.pk}"

    with written() as w:
        response = staff.patch(
            f"/api/v1/clients/{holder.pk}/",
            {"phone": "+79995554433"},
            content_type="application/json",
        )
    assert response.status_code == 200, response.json()
    event = w.only(ClientEvent)
    assert event.pgh_diff == {"phone": [holder.phone, "+79995554433"]}
    assert metadata(event)["actor"] == f"user:{staff.user.pk}"


def test_a_refused_api_change_records_nothing(side):
    with written() as w:
        response = side.api.patch(
            f"/api/v1/accounts/{side.account.pk}/", {"credit_limit": "-5.00"}, format="json"
        )
    assert response.status_code == 400
    assert w.total == 0


def test_client_and_account_creation_through_the_api_are_recorded(side):
    with written() as w:
        created = post(side.api, "/api/v1/clients/", {"kind": "individual", "name": "Anna"})
        assert created.status_code == 201, created.json()
        opened = post(
            side.api,
            "/api/v1/accounts/",
            {"client": created.json()["id"], "credit_limit": "100.00"},
        )
        assert opened.status_code == 201, opened.json()
    (client_event,) = w.of(ClientEvent)
    (account_event,) = w.of(AccountEvent)
    assert client_event.pgh_label == account_event.pgh_label == "create"
    assert client_event.pgh_diff["name"] == [None, "Anna"]
    assert account_event.pgh_diff["credit_limit"] == [None, "100.00"]
    assert Client.objects.get(pk=created.json()["id"])
    for event in (client_event, account_event):
        assert metadata(event)["actor"] == f"partner:{side.partner.pk}"


def test_bulk_inserted_accounts_get_one_event_each_in_one_context():
    holder = ClientFactory()
    with written() as w, acting(Caller.system("import_2026_03")):
        created = Account.objects.bulk_create(
            Account(number=number, client=holder, currency="RUB", credit_limit=Decimal("9.00"))
            for number in account_numbers_allocate(3)
        )
        Account.objects.bulk_create([])  # nothing inserted, nothing recorded
    events = w.of(AccountEvent)
    assert [e.pgh_obj_id for e in events] == [a.pk for a in created]
    assert {e.pgh_label for e in events} == {"create"}
    assert {e.pgh_diff["credit_limit"][1] for e in events} == {"9.00"}
    assert len({e.pgh_context_id for e in events}) == 1
    assert metadata(events[0])["actor"] == "system:import_2026_03"
