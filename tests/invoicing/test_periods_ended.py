"""Invoice runs and recalculations take only periods that have ended (API.md, "Who may touch
what"): the current month and later ones (business time zone) are refused with
``validation_error`` naming ``period``, through the services, the API and the commands."""

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command

from invoicing import services
from invoicing.exceptions import InvoicingValidationError
from invoicing.meters import month_add
from invoicing.models import BillingPeriod, InvoiceRun
from tests.api.conftest import make_side
from tests.api.helpers import error_of, post

V1 = "/api/v1"


def period_code(day) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def not_ended() -> list[str]:
    """Today's period (it ends tonight at the earliest) and next month's."""
    first = services.today().replace(day=1)
    return [period_code(first), period_code(month_add(first, 1))]


def last_ended() -> str:
    return period_code(services.today().replace(day=1) - timedelta(days=1))


@pytest.mark.parametrize("which", [0, 1])
def test_invoice_run_start_refuses_a_period_that_has_not_ended(db, which):
    code = not_ended()[which]
    with pytest.raises(InvoicingValidationError) as refused:
        services.invoice_run_start(period=code)
    assert refused.value.details["field"] == "period"
    assert not InvoiceRun.objects.exists()
    assert not BillingPeriod.objects.filter(code=code).exists()


def test_invoice_run_start_takes_the_last_ended_period(db):
    run = services.invoice_run_start(period=last_ended())
    assert run.period.code == last_ended()


def test_invoice_recalculate_refuses_a_period_that_has_not_ended(account):
    for code in not_ended():
        with pytest.raises(InvoicingValidationError) as refused:
            services.invoice_recalculate(account=account, period=code)
        assert refused.value.details["field"] == "period"


def test_api_refuses_runs_and_recalculations_of_periods_not_ended(db):
    side = make_side("Partner A", funds="0")
    for code in not_ended():
        response = post(side.api, f"{V1}/invoice-runs/", {"period": code})
        assert error_of(response) == (400, "validation_error")
        assert "period" in response.json()["details"]
        response = post(
            side.api, f"{V1}/invoices/recalculate/", {"account": side.account.pk, "period": code}
        )
        assert error_of(response) == (400, "validation_error")
        assert "period" in response.json()["details"]
    assert not InvoiceRun.objects.exists()


def test_commands_refuse_periods_not_ended(account):
    code = not_ended()[0]
    with pytest.raises(CommandError, match="not ended"):
        call_command("invoice_run", "--period", code)
    with pytest.raises(CommandError, match="not ended"):
        call_command("recalculate_invoices", "--account", str(account.pk), "--period", code)
    assert not InvoiceRun.objects.exists()
