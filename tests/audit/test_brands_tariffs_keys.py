"""The audit trail of brands (bank details), tariffs and their tiers, and API keys (creation,
name, brands, revocation): service, admin, API, command and task paths, each naming its actor."""

from datetime import date
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django_q.tasks import async_task

from access.models import ApiKey, ApiKeyEvent
from access.services import (
    api_key_create,
    api_key_revoke,
    api_key_update,
    partner_get_or_create,
)
from accounts.models import Account, AccountEvent
from approvals.models import ApprovalRequest
from brands.models import BrandEvent
from core.audit.context import acting
from core.caller import Caller
from invoicing.models import Tariff, TariffEvent, TariffTierEvent
from invoicing.services import tariff_create
from partners.models import ApiKeyBrandEvent
from tests.api.helpers import post
from tests.audit.conftest import admin_form_data, metadata, written
from tests.factories import AccountFactory, BrandFactory, ServiceFactory, UserFactory

pytestmark = pytest.mark.django_db


def _change_url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


# --------------------------------------------------------------------------- brands


def test_brand_bank_details_change_through_the_admin(staff):
    brand = BrandFactory()
    page = staff.get(_change_url(brand))
    data = admin_form_data(page) | {
        "bank_name": "AO Alfa-Bank",
        "bank_bik": "044525593",
        "bank_account": "40702810701300000001",
        "bank_correspondent_account": "30101810200000000593",
    }
    with written() as w:
        response = staff.post(_change_url(brand), data)
    assert response.status_code == 302, response.context and response.context["adminform"].errors
    assert w.total == 0  # new bank details wait for a second person (maker-checker)
    checker = UserFactory(is_staff=True, is_superuser=True)
    checker.save()
    approver = Client()
    approver.force_login(checker)
    with written() as w:
        approver.post(
            reverse("admin:approvals_approvalrequest_changelist"),
            {"action": "approve_requests", "_selected_action": [ApprovalRequest.objects.get().pk]},
        )
    event = w.only(BrandEvent)
    assert event.pgh_diff == {
        "bank_name": ["PAO Sberbank", "AO Alfa-Bank"],
        "bank_bik": ["044525225", "044525593"],
        "bank_account": ["40702810900000000001", "40702810701300000001"],
        "bank_correspondent_account": ["30101810400000000225", "30101810200000000593"],
    }
    assert metadata(event)["actor"] == f"user:{checker.pk}"  # who approved, in this request


def test_brand_saved_unchanged_through_the_admin_writes_nothing(staff):
    brand = BrandFactory()
    page = staff.get(_change_url(brand))
    with written() as w:
        response = staff.post(_change_url(brand), admin_form_data(page))
    assert response.status_code == 302
    assert w.total == 0


def test_brand_details_changed_in_code_or_sql_are_recorded(staff_user):
    brand = BrandFactory()
    with written() as w, acting(user=staff_user):
        brand.legal_name = "OOO Renamed"
        brand.save()
    assert w.only(BrandEvent).pgh_diff == {"legal_name": [f"OOO {brand.name}", "OOO Renamed"]}
    with written() as w, connection.cursor() as cursor:
        cursor.execute("UPDATE brands_brand SET kpp = '770201001' WHERE id = %s", [brand.pk])
    event = w.only(BrandEvent)
    assert event.pgh_diff == {"kpp": ["770101001", "770201001"]}
    assert event.pgh_context_id is None and event.pgh_db_user


# --------------------------------------------------------------------------- tariffs


def test_tariff_versions_and_tiers_through_the_service():
    service = ServiceFactory()
    with written() as w, acting(Caller.system("price_list_2026")):
        first = tariff_create(
            service=service, kind="flat", price="300.00", valid_from=date(2026, 1, 1)
        )
    event = w.only(TariffEvent, label="create")
    assert event.pgh_diff["price"] == [None, "300.000000"]
    assert metadata(event)["actor"] == "system:price_list_2026"

    with written() as w, acting(Caller.system("price_list_2026")):
        tariff_create(
            service=service,
            kind="tiered",
            tiers=[{"up_to": "100", "price": "4"}, {"up_to": None, "price": "5.5"}],
            valid_from=date(2026, 7, 1),
        )
    ended, created = w.of(TariffEvent)
    assert (ended.pgh_obj_id, ended.pgh_label) == (first.pk, "change")
    assert ended.pgh_diff == {"valid_to": [None, "2026-06-30"]}
    assert created.pgh_label == "create" and created.pgh_diff["kind"] == [None, "tiered"]
    tiers = w.of(TariffTierEvent)
    assert [(t.pgh_label, t.position, t.pgh_diff["price"]) for t in tiers] == [
        ("create", 1, [None, "4.000000"]),
        ("create", 2, [None, "5.500000"]),
    ]
    assert all(metadata(t)["actor"] == "system:price_list_2026" for t in tiers)


def test_tariff_created_through_the_api_by_partner_and_by_staff(side, staff):
    body = {"service": side.service.pk, "kind": "per_unit", "price": "2.50"}
    with written() as w:
        response = post(side.api, "/api/v1/tariffs/", body | {"valid_from": "2026-01-01"})
    assert response.status_code == 201, response.json()
    event = w.only(TariffEvent, label="create")
    assert event.pgh_obj_id == response.json()["id"]
    assert metadata(event)["actor"] == f"partner:{side.partner.pk}"
    assert metadata(event)["api_key"] == side.partner.api_keys.get().pk

    with written() as w:
        response = staff.post(
            "/api/v1/tariffs/",
            body | {"valid_from": "2026-03-01", "price": "2.75"},
            content_type="application/json",
        )
    assert response.status_code == 201, response.json()
    ended, created = w.of(TariffEvent)
    assert ended.pgh_diff == {"valid_to": [None, "2026-02-28"]}
    assert created.pgh_diff["price"] == [None, "2.750000"]
    assert {metadata(e)["actor"] for e in (ended, created)} == {f"user:{staff.user.pk}"}


# --------------------------------------------------------------------------- API keys


def test_api_key_creation_and_revocation_through_the_services(staff_user):
    brands = [BrandFactory(), BrandFactory()]
    partner = partner_get_or_create(name="Keys Partner", brands=brands)
    with written() as w, acting(user=staff_user):
        key, _ = api_key_create(
            partner=partner, brands=brands, name="checkout", capabilities=["read", "payments"]
        )
    (created,) = w.of(ApiKeyEvent)
    assert created.pgh_label == "create"
    assert created.pgh_diff == {
        "partner": [None, str(partner.pk)],
        "name": [None, "checkout"],
        "prefix": [None, key.prefix],
        "capabilities": [None, "{read,payments}"],
    }
    links = w.of(ApiKeyBrandEvent)
    assert sorted(e.pgh_diff["brand"][1] for e in links) == sorted(str(b.pk) for b in brands)
    assert {e.apikey_id for e in links} == {key.pk}
    assert all(metadata(e)["actor"] == f"user:{staff_user.pk}" for e in [created, *links])
    assert "hashed_secret" not in created.pgh_diff  # the secret's hash is never copied

    with written() as w, acting(user=staff_user):
        api_key_update(api_key=key, capabilities=["read"])
    assert w.only(ApiKeyEvent).pgh_diff == {"capabilities": ["{read,payments}", "{read}"]}

    with written() as w, acting(Caller.system("key_rotation")):
        api_key_revoke(api_key=key)
        api_key_revoke(api_key=key)  # the second revocation changes nothing
    event = w.only(ApiKeyEvent)
    assert event.pgh_diff["revoked_at"][0] is None and event.pgh_diff["revoked_at"][1]
    assert metadata(event)["actor"] == "system:key_rotation"


def test_api_key_use_records_nothing(side):
    ApiKey.objects.update(last_used_at=None)
    with written() as w:
        assert side.api.get("/api/v1/accounts/").status_code == 200
    assert ApiKey.objects.get().last_used_at is not None
    assert w.total == 0


def test_api_key_created_by_the_command_names_the_command():
    brand = BrandFactory(code="CMDBR")
    with written() as w:
        call_command("create_api_key", partner="Command Partner", brands="CMDBR", name="ops")
    (event,) = w.of(ApiKeyEvent)
    (link,) = w.of(ApiKeyBrandEvent)
    assert link.pgh_diff == {
        "apikey": [None, str(event.pgh_obj_id)],
        "brand": [None, str(brand.pk)],
    }
    for recorded in (event, link):
        assert metadata(recorded)["actor"] == "system:create_api_key"
        assert metadata(recorded)["command"] == "create_api_key"


def test_api_key_rename_capabilities_and_revoke_through_the_admin(staff, side):
    key = side.partner.api_keys.get()
    page = staff.get(_change_url(key))
    data = admin_form_data(page) | {"name": "renamed", "capabilities": ["read", "holds"]}
    with written() as w:
        response = staff.post(_change_url(key), data)
    assert response.status_code == 302, response.context and response.context["adminform"].errors
    event = w.only(ApiKeyEvent)
    assert event.pgh_diff["name"] == ["", "renamed"]
    assert event.pgh_diff["capabilities"][1] == "{read,holds}"
    assert metadata(event)["actor"] == f"user:{staff.user.pk}"

    with written() as w:
        staff.post(
            reverse("admin:access_apikey_changelist"),
            {"action": "revoke", "_selected_action": [key.pk]},
        )
    event = w.only(ApiKeyEvent)
    assert list(event.pgh_diff) == ["revoked_at"]
    assert metadata(event)["actor"] == f"user:{staff.user.pk}"


# --------------------------------------------------------------------------- q2 tasks


def raise_credit_limit(account_id: int, amount: str) -> None:
    """A task for the test below (django-q2 runs it by its dotted path)."""
    from accounts.services import account_update

    account_update(account=Account.objects.get(pk=account_id), credit_limit=Decimal(amount))


def test_a_q2_task_names_itself_as_the_actor():
    account = AccountFactory()
    with written() as w:
        async_task(
            "tests.audit.test_brands_tariffs_keys.raise_credit_limit",
            account.pk,
            "42.00",
            sync=True,
            task_name="raise-limit-test",
        )
    event = w.only(AccountEvent)
    assert event.pgh_diff == {"credit_limit": ["0.00", "42.00"]}
    context = metadata(event)
    assert context["actor"] == "system:tests.audit.test_brands_tariffs_keys.raise_credit_limit"
    assert context["task"] == "raise-limit-test"
    # The task's context is closed once it finished: later changes are not attributed to it.
    with written() as w, connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_account SET credit_limit = 43 WHERE id = %s", [account.pk])
    assert w.only(AccountEvent).pgh_context_id is None


def test_tariffs_are_never_deleted_silently():
    service = ServiceFactory()
    tariff = tariff_create(
        service=service,
        kind="tiered",
        tiers=[{"up_to": "10", "price": "1"}, {"up_to": None, "price": "2"}],
        valid_from=date(2026, 1, 1),
    )
    with written() as w:
        Tariff.objects.filter(pk=tariff.pk).delete()
    assert [e.pgh_label for e in w.of(TariffEvent)] == ["delete"]
    assert [e.pgh_label for e in w.of(TariffTierEvent)] == ["delete", "delete"]
    assert w.of(TariffEvent)[0].pgh_diff["valid_from"] == ["2026-01-01", None]
