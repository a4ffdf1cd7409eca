"""The staff UI in a real browser: an operator finds an account and posts a payment, a
refused debit shows its reason, an accountant watches an invoice run finish, the language
switch turns the UI Russian, and a view-only user gets no posting forms."""

import os
import re
import signal
import subprocess
import sys
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.db import connection

from accounts.models import Account
from backoffice.roles import ACCOUNTANT, OPERATOR, ensure_roles, role_assign
from invoicing.models import Invoice, InvoiceRun
from ledger import services
from ledger.models import Transaction
from tests.e2e.conftest import ROOT, login
from tests.factories import AccountFactory, BrandFactory, ServiceFactory, UserFactory
from tests.invoicing.population import build_population

pytestmark = pytest.mark.django_db(transaction=True)


def make_user(username: str, role: str | None = None):
    user = UserFactory(username=username, is_staff=True)
    user.save()
    if role is not None:
        role_assign(user, role)
    return user


@pytest.fixture
def funded_account():
    ensure_roles()
    brand = BrandFactory(name="Food Delivery")
    ServiceFactory(brand=brand, name="Orders")
    account = AccountFactory(brands=[brand], write_off_limit_day=Decimal("300.00"))
    services.payment_post(account=account, amount=Decimal("1000.00"), channel="bank")
    account.refresh_from_db()
    return account


def test_operator_finds_an_account_posts_a_payment_and_sees_a_refused_debit(
    page, funded_account, screenshot
):
    make_user("olga", OPERATOR)
    login(page, "olga")
    screenshot(page, "dashboard")

    page.fill("#navbar-search", funded_account.number[:8])
    result = page.locator(f'#search-results [data-number="{funded_account.number}"]')
    result.wait_for()
    screenshot(page, "search")
    result.click()
    page.wait_for_selector("#account-number")
    assert page.inner_text("#balance") == "1,000.00 RUB"

    page.click('[data-action="payment"]')
    page.fill("#id_amount", "250.00")
    page.select_option("#id_channel", "cash")
    page.click("#review-button")
    page.wait_for_selector("#review-summary")
    assert "250.00 RUB" in page.inner_text("#review-summary")
    screenshot(page, "payment-review")
    assert Transaction.objects.filter(kind="payment").count() == 1  # nothing posted yet
    page.click("#confirm")
    page.wait_for_selector("#account-number")
    assert page.inner_text("#balance") == "1,250.00 RUB"
    assert "New balance: 1,250.00 RUB" in page.inner_text("[data-message=success]")
    screenshot(page, "account")

    page.click('[data-action="debit"]')
    page.fill("#id_amount", "500.00")
    page.select_option("#id_brand", str(funded_account.brands.get().pk))
    page.click("#review-button")
    page.click("#confirm")
    refusal = page.locator("#form-refusal")
    refusal.wait_for()
    assert refusal.get_attribute("data-code") == "write_off_limit_exceeded"
    assert "write-off limit" in refusal.inner_text().lower()
    screenshot(page, "debit-refused")
    funded_account.refresh_from_db()
    assert funded_account.balance == Decimal("1250.00")
    assert not Transaction.objects.filter(kind="debit").exists()


def cluster_env() -> dict[str, str]:
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    return {**os.environ, "DATABASE_URL": url, "Q_WORKERS": "2"}


def test_accountant_starts_an_invoice_run_and_watches_the_progress_bar_finish(
    page, screenshot, settings
):
    ensure_roles()
    population = build_population(30, period="2026-01")
    make_user("anna", ACCOUNTANT)
    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=cluster_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        login(page, "anna")
        page.click('[data-menu="runs"]')
        page.fill("#id_period", "2026-01")
        page.select_option("#id_mode", "issue")
        page.click("#start-run")
        page.wait_for_selector("#run-progress")
        url = page.url
        # The bar is replaced by htmx polls, the page itself is never reloaded.
        page.evaluate("window.__same_page = true")
        page.wait_for_selector('#run-progress[data-status="completed"]', timeout=120_000)
        assert page.evaluate("window.__same_page") is True
        assert page.url == url
        assert page.inner_text("#run-progress .progress-bar") == "100%"
        screenshot(page, "invoice-run")
    finally:
        os.killpg(cluster.pid, signal.SIGTERM)
        try:
            cluster.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)
            cluster.wait()
    run = InvoiceRun.objects.get()
    assert run.status == InvoiceRun.Status.COMPLETED
    assert run.invoices_issued == Invoice.objects.count() == len(population.expected)


def test_language_switch_to_russian_shows_russian_labels(page, funded_account):
    make_user("olga", OPERATOR)
    login(page, "olga")
    assert page.inner_text('[data-menu="clients"]') == "Clients"
    page.click('#language-switch [data-language="ru"]')
    page.wait_for_selector('#language-switch [data-language="ru"].btn-light')
    assert page.inner_text('[data-menu="clients"]') == "Клиенты"
    assert page.inner_text('[data-menu="dashboard"]') == "Обзор"
    page.goto(f"/accounts/{funded_account.pk}/")
    # Money in the Russian locale: a space between thousands, a decimal comma.
    assert re.fullmatch(r"1\s000,00 RUB", page.inner_text("#balance"))
    assert page.inner_text('[data-action="payment"]') == "Принять платёж"


def test_a_view_only_user_sees_no_posting_forms(page, funded_account):
    ensure_roles()
    viewer = make_user("victor")
    viewer.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label__in=["accounts", "ledger"], codename__startswith="view_"
        )
    )
    login(page, "victor")
    page.goto(f"/accounts/{funded_account.pk}/")
    assert page.inner_text("#balance") == "1,000.00 RUB"
    assert page.locator("[data-action]").count() == 0
    response = page.goto(f"/ledger/accounts/{funded_account.pk}/post/payment/")
    assert response.status == 403
    assert Account.objects.get(pk=funded_account.pk).balance == Decimal("1000.00")
