"""Admin of invoicing: every list opens, runs show progress, the approve action issues."""

import pytest
from django.conf import settings
from django.test import override_settings
from django.urls import reverse

from invoicing.models import Invoice, InvoiceRun
from tests.factories import UserFactory
from tests.invoicing.population import build_population


@pytest.fixture
def admin_client(client, db):
    user = UserFactory(is_staff=True, is_superuser=True)
    user.save()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "model",
    [
        "tariff",
        "subscription",
        "usagerecord",
        "meter",
        "meterreading",
        "billingperiod",
        "invoicerun",
        "invoice",
        "penaltypolicy",
    ],
)
def test_admin_changelists_open(admin_client, model):
    build_population(3)
    response = admin_client.get(reverse(f"admin:invoicing_{model}_changelist"))
    assert response.status_code == 200


def test_admin_approve_action_issues_a_draft_run(
    admin_client, bill, django_capture_on_commit_callbacks
):
    population = build_population(4)
    run = bill(mode="draft")
    assert run.status == InvoiceRun.Status.DRAFT_READY
    page = admin_client.get(reverse("admin:invoicing_invoicerun_changelist"))
    assert "4/4 (100%)" in page.content.decode()
    with (
        override_settings(Q_CLUSTER={**settings.Q_CLUSTER, "sync": True}),
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = admin_client.post(
            reverse("admin:invoicing_invoicerun_changelist"),
            {"action": "approve_runs", "_selected_action": [run.pk]},
        )
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == InvoiceRun.Status.COMPLETED
    assert Invoice.objects.filter(status="issued").count() == len(population.expected)
    assert (
        admin_client.get(reverse("admin:invoicing_invoicerun_change", args=[run.pk])).status_code
        == 200
    )
