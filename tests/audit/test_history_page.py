"""The admin's "History" page of an audited object shows its database audit trail: who, when,
field: old -> new, newest first; it is the page's one history entry point."""

import html
import re
from datetime import date
from decimal import Decimal

import pytest
from django.db import connection
from django.urls import reverse

from access.services import api_key_create, api_key_revoke, partner_get_or_create
from accounts.services import account_update, client_update
from core.audit.context import acting
from core.caller import Caller
from invoicing.services import tariff_create
from tests.api.helpers import post
from tests.factories import AccountFactory, BrandFactory, ServiceFactory, UserFactory

pytestmark = pytest.mark.django_db


def _url(obj, view: str) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_{view}", args=[obj.pk])


def _rows(page: str) -> list[str]:
    """The text of each history row, tags stripped, in page order."""
    rows = re.findall(r'<tr class="audit-entry">(.*?)</tr>', page, flags=re.S)
    text = [html.unescape(re.sub(r"<[^>]+>", " ", row)) for row in rows]
    return [" ".join(row.split()).replace(" :", ":") for row in text]


def test_account_history_page_shows_changes_newest_first_with_actor(staff, side):
    account = side.account
    with acting(Caller.system("limits_review")):
        account_update(account=account, credit_limit=Decimal("500.00"))
    post(side.api, f"/api/v1/accounts/{account.pk}/block/", {"reason": "Chargeback"})
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE accounts_account SET write_off_limit_day = 70 WHERE id = %s", [account.pk]
        )
    response = staff.get(_url(account, "history"))
    assert response.status_code == 200
    rows = _rows(response.content.decode())
    assert len(rows) == 4  # opened, limit, block, raw SQL
    assert "no application context (database role" in rows[0]
    assert "Write off limit day: — → 70.00" in rows[0]
    key = side.partner.api_keys.get()
    assert f"partner Audit Partner (#{side.partner.pk}), API key #{key.pk}" in rows[1]
    assert "Status: Open → Blocked" in rows[1]
    assert "Status reason: — → Chargeback" in rows[1]
    assert "system: limits_review" in rows[2]
    assert "Credit limit: 0.00 → 500.00" in rows[2]
    assert ") created Status: Open" in rows[3]


def test_account_page_has_one_history_link_and_it_is_the_audit_trail(staff, side):
    page = staff.get(_url(side.account, "change")).content.decode()
    links = re.findall(r'<a href="([^"]+)"[^>]*>\s*History\s*</a>', page)
    assert links == [_url(side.account, "history")]
    assert "Entries</a>" in page  # the ledger's entries of the account, under their own name


def test_client_history_page_resolves_users(staff, staff_user):
    holder = AccountFactory().client
    with acting(user=staff_user):
        client_update(client=holder, phone="+79990009988")
    rows = _rows(staff.get(_url(holder, "history")).content.decode())
    assert f"auditor (user #{staff_user.pk})" in rows[0]
    assert "Phone:" in rows[0] and "+79990009988" in rows[0]


def test_brand_history_page_shows_bank_details(staff, staff_user):
    brand = BrandFactory()
    with acting(user=staff_user):
        brand.bank_bik = "044525593"
        brand.save()
    rows = _rows(staff.get(_url(brand, "history")).content.decode())
    assert "BIK: 044525225 → 044525593" in rows[0]


def test_tariff_history_page_shows_its_tiers(staff):
    with acting(Caller.system("price_list")):
        tariff = tariff_create(
            service=ServiceFactory(),
            kind="tiered",
            tiers=[{"up_to": "100", "price": "4"}, {"up_to": None, "price": "5.5"}],
            valid_from=date(2026, 1, 1),
        )
    rows = _rows(staff.get(_url(tariff, "history")).content.decode())
    assert len(rows) == 3
    assert any("created tier 2" in row and "Price: 5.500000" in row for row in rows)
    assert any("created" in row and "Kind: Tiered" in row for row in rows)


@pytest.mark.django_db(transaction=True)
def test_api_key_history_page_shows_brands_and_revocation(staff, staff_user):
    """Created and revoked in two transactions, as two requests would: the audit events'
    time is their transaction's, so inside one test transaction the revocation and the
    brand link (another event table, ids of its own sequence) would tie."""
    brand = BrandFactory(code="HISTBR")
    partner = partner_get_or_create(name="History Partner", brands=[brand])
    with acting(user=staff_user):
        key, _ = api_key_create(
            partner=partner, brands=[brand], name="pos", capabilities=["read", "payments"]
        )
        api_key_revoke(api_key=key)
    rows = _rows(staff.get(_url(key, "history")).content.decode())
    assert len(rows) == 3
    assert "Revoked at" in rows[0]
    assert "Capabilities: read, payments" in " ".join(rows)
    assert any("created brand link" in row and "HISTBR" in row for row in rows)


def test_history_page_needs_view_permission(client, side):
    user = UserFactory(is_staff=True)
    user.save()
    client.force_login(user)
    assert client.get(_url(side.account, "history")).status_code == 403
