"""The dashboard's figures, search as you type, the clients list and the client and
account pages, read through the real services' results."""

import json
from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.services import account_block
from ledger import services
from ledger.maker_checker import adjustment_request
from tests.factories import AccountFactory, ClientFactory

pytestmark = pytest.mark.django_db


def figure(page: str, name: str) -> str:
    return page.split(f'data-figure="{name}">')[1].split("<")[0].strip()


def test_dashboard_figures_follow_the_ledger(as_role, ui_users, ui_account, ui_brand, settings):
    settings.BACKOFFICE_DASHBOARD_CACHE_SECONDS = 0
    debtor = AccountFactory(brands=[ui_brand], credit_limit=Decimal("500.00"))
    services.debit_post(account=debtor, amount=Decimal("120.00"), brand=ui_brand)
    services.accrual_post(account=ui_account, amount=Decimal("30.00"), brand=ui_brand)
    account_block(account=debtor, reason="debt")
    adjustment_request(
        account=ui_account,
        amount=Decimal("5.00"),
        reason="fee",
        caller=services.Caller.for_user(ui_users["accountant"]),
    )
    response = as_role("operator").get(reverse("backoffice:dashboard"))
    page = response.content.decode()
    assert figure(page, "payments-RUB") == "1,000.00 RUB"
    assert figure(page, "charges-RUB") == "150.00 RUB"
    assert figure(page, "balances-RUB") == "970.00 RUB"
    assert figure(page, "debt-RUB") == "120.00 RUB"
    assert figure(page, "blocked") == "1"
    assert figure(page, "approvals") == "1"
    chart = json.loads(page.split('id="turnover-data" type="application/json">')[1].split("<")[0])
    assert len(chart["labels"]) == 30
    assert chart["payments"][-1] == "1000.00"
    assert chart["charges"][-1] == "150.00"


def test_dashboard_figures_are_shared_for_the_cache_period(as_role, ui_account, settings):
    from django.core.cache import cache

    cache.clear()
    settings.BACKOFFICE_DASHBOARD_CACHE_SECONDS = 60
    client = as_role("operator")
    first = client.get(reverse("backoffice:dashboard")).content.decode()
    services.payment_post(account=ui_account, amount=Decimal("5.00"))
    cached = client.get(reverse("backoffice:dashboard")).content.decode()
    assert figure(first, "payments-RUB") == figure(cached, "payments-RUB") == "1,000.00 RUB"
    cache.clear()
    fresh = client.get(reverse("backoffice:dashboard")).content.decode()
    assert figure(fresh, "payments-RUB") == "1,005.00 RUB"


def test_dashboard_money_in_russian(as_role, ui_account, settings):
    settings.BACKOFFICE_DASHBOARD_CACHE_SECONDS = 0
    client = as_role("operator")
    client.cookies["django_language"] = "ru"
    page = client.get(reverse("backoffice:dashboard")).content.decode()
    assert figure(page, "payments-RUB") == "1\xa0000,00 RUB"
    assert 'lang="ru"' in page


@pytest.mark.parametrize(
    ("query", "kind"),
    [("number", "account"), ("tax_id", "client"), ("phone", "client"), ("email", "client")],
)
def test_search_finds_by_number_tax_id_phone_and_email(as_role, ui_account, query, kind):
    client_obj = ui_account.client
    text = {
        "number": ui_account.number[:7],
        "tax_id": client_obj.tax_id[:6],
        "phone": client_obj.phone[-6:],
        "email": client_obj.email[:5],
    }[query]
    response = as_role("operator").get(
        reverse("backoffice:search"), {"q": text}, HTTP_HX_REQUEST="true"
    )
    body = response.content.decode()
    assert "<html" not in body  # the htmx partial only
    target = (
        reverse("backoffice:account", args=[ui_account.pk])
        if kind == "account"
        else reverse("backoffice:client", args=[client_obj.pk])
    )
    assert f'href="{target}"' in body


def test_search_by_name_and_nothing_found(as_role, db):
    ClientFactory(name="Ivanova Maria")
    client = as_role("operator")
    assert (
        "Ivanova Maria"
        in client.get(reverse("backoffice:search"), {"q": "vanova"}).content.decode()
    )
    body = client.get(reverse("backoffice:search"), {"q": "zzzz-nobody"}).content.decode()
    assert 'data-result="none"' in body


def test_client_page_shows_the_accounts_tree_with_funds_and_limits(as_role, ui_account, ui_brand):
    child = AccountFactory(
        brands=[ui_brand], parent=ui_account, write_off_limit_month=Decimal("700.00")
    )
    page = (
        as_role("operator")
        .get(reverse("backoffice:client", args=[ui_account.client_id]))
        .content.decode()
    )
    tree = page.split('id="account-tree"')[1]
    assert tree.index(ui_account.number) < tree.index(child.number)
    assert "tree-level-1" in tree
    assert "1,000.00 RUB" in tree
    assert "700.00" in tree


def test_account_history_pages_by_keyset_and_filters_by_date(as_role, ui_account):
    for n in range(35):
        services.payment_post(account=ui_account, amount=Decimal("1.00"), memo=f"p{n}")
    client = as_role("operator")
    url = reverse("backoffice:account", args=[ui_account.pk])
    first = client.get(url).content.decode()
    assert first.count('data-entry="') == 30
    older = first.split('id="history-older" href="?')[1].split('"')[0].replace("&amp;", "&")
    second = client.get(f"{url}?{older}").content.decode()
    assert second.count('data-entry="') == 6
    assert 'id="history-older"' not in second
    empty = client.get(url, {"date_from": "2001-01-01", "date_to": "2001-01-31"}).content.decode()
    assert 'data-entry="' not in empty


def test_clients_list_sorts_filters_and_exports(as_role, db):
    ClientFactory(name="Alpha")
    ClientFactory(name="Beta", kind="legal_entity", tax_id="7707083893")
    client = as_role("operator")
    page = client.get(reverse("backoffice:clients"), {"sort": "-name"}).content.decode()
    assert page.index("Beta") < page.index("Alpha")
    filtered = client.get(reverse("backoffice:clients"), {"kind": "legal_entity"}).content.decode()
    assert "Beta" in filtered and "Alpha" not in filtered
    export = client.get(reverse("backoffice:clients"), {"kind": "legal_entity", "export": "csv"})
    rows = b"".join(export.streaming_content).decode().strip().splitlines()  # streamed
    assert rows[0].startswith("id,kind,name")
    assert len(rows) == 2 and "Beta" in rows[1]
    nul = client.get(reverse("backoffice:clients"), {"q": "a\x00b"})
    assert nul.status_code == 200  # unstorable text is dropped with a message, never a 500
