"""Payment intake in a real browser: an accountant uploads an agent's registry, sees the
preview (totals, the control line checked, nothing stored yet), applies it and lands on
the applied registry with its reconciliation."""

from decimal import Decimal

import pytest

from backoffice.roles import ACCOUNTANT, ensure_roles
from payments.models import Registry
from payments.services import payment_agent_create
from tests.e2e.conftest import login
from tests.e2e.test_staff_ui import make_user
from tests.factories import AccountFactory, BrandFactory
from tests.payments.conftest import Pay, sber_txt

pytestmark = pytest.mark.django_db(transaction=True)


def test_accountant_uploads_a_registry_sees_the_preview_and_applies_it(page, screenshot):
    ensure_roles()
    make_user("anna", ACCOUNTANT)
    payment_agent_create(code="SBER", name="Sberbank", format="sber-txt", commission_rate="1.50")
    brand = BrandFactory(name="Water")
    first, second = AccountFactory(brands=[brand]), AccountFactory(brands=[brand])
    content = sber_txt(
        [
            Pay("E1", first.number, "120.00"),
            Pay("E2", second.number, "80.25"),
            Pay("E3", "40817810000000000000", "5.00"),
        ]
    )
    login(page, "anna")
    page.click('[data-menu="payments"]')
    page.click('[data-menu="registry-upload"]')
    page.select_option("#id_agent", "SBER")
    page.set_input_files(
        "#id_file", files=[{"name": "reestr.txt", "mimeType": "text/plain", "buffer": content}]
    )
    page.click("#registry-preview-button")
    page.wait_for_selector("#registry-preview")
    assert page.is_visible("#control-ok")
    assert "205.25" in page.inner_text("#registry-totals")
    screenshot(page, "registry-preview")
    assert not Registry.objects.exists()  # the preview stored nothing
    page.click("#registry-apply")
    page.wait_for_selector('#registry-figures [data-status="applied"]')
    assert page.get_attribute("#reconciliation", "data-balanced") == "true"
    screenshot(page, "registry-applied")
    registry = Registry.objects.get()
    assert (registry.posted, registry.suspense) == (2, 1)
    first.refresh_from_db()
    assert first.balance == Decimal("120.00")
