"""Reports in the staff UI: the index with the projections' lag, a standard report's
rows, totals and chart series, its streamed export, bad filters answered on the form,
and the pages refused (403) to roles without ``reports.view_reports``."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from ledger.services import accrual_post
from reports.projections import projections_update
from tests.factories import AccountFactory, BrandFactory, ServiceFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _period() -> dict[str, str]:
    today = timezone.localdate()
    return {"date_from": str(today - timedelta(days=1)), "date_to": str(today + timedelta(days=1))}


@pytest.fixture
def revenue_ledger(db):
    brand = BrandFactory(code="UIREV")
    water = ServiceFactory(brand=brand, code="water")
    account = AccountFactory(brands=[brand])
    accrual_post(account=account, amount="30.00", brand=brand, service=water)
    accrual_post(account=account, amount="12.50", brand=brand)
    return brand


def test_accountant_sees_the_index_with_the_projection_lag(as_role, revenue_ledger):
    client = as_role("accountant")
    page = client.get(reverse("reports:index")).content.decode()
    assert 'data-report="revenue"' in page
    assert 'data-pending="2"' in page  # two postings not projected yet
    projections_update()
    page = client.get(reverse("reports:index")).content.decode()
    assert 'data-pending="0"' in page


def test_revenue_report_shows_rows_totals_and_the_chart_series(as_role, revenue_ledger):
    projections_update()
    client = as_role("accountant")
    page = client.get(reverse("reports:report", args=["revenue"]), _period()).content.decode()
    assert 'id="report-table"' in page
    assert "UIREV" in page
    assert "42.50" in page  # the total
    chart = json.loads(
        re.search(r'id="report-chart-data"[^>]*>(.*?)</script>', page, re.S).group(1)
    )
    assert sorted(chart["series"][0]["data"]) == ["12.50", "30.00"]
    assert "vendor/chartjs/chart.umd.min.js" in page


def test_report_export_streams_the_same_rows(as_role, revenue_ledger):
    projections_update()
    response = as_role("accountant").get(
        reverse("reports:report", args=["revenue"]), {**_period(), "export": "csv"}
    )
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:2] == ["Brand", "Service"]
    assert sorted(r[5] for r in rows[1:]) == ["12.50", "30.00"]


def test_bad_filters_are_answered_on_the_form(as_role, db):
    client = as_role("accountant")
    today = timezone.localdate()
    response = client.get(
        reverse("reports:report", args=["turnover"]),
        {"date_from": str(today), "date_to": str(today - timedelta(days=3)), "group_by": "x"},
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert 'data-error="date_to"' in body and 'data-error="group_by"' in body
    assert 'id="report-table"' not in body
    missing = client.get(
        reverse("reports:report", args=["statement"]), {**_period(), "account": "nope"}
    )
    assert "No account with this number." in missing.content.decode()
    assert client.get(reverse("reports:report", args=["nothing"])).status_code == 404


@pytest.mark.parametrize("role", ["operator", "viewer"])
def test_roles_without_the_reports_permission_get_403(as_role, role, revenue_ledger):
    client = as_role(role)
    assert client.get(reverse("reports:index")).status_code == 403
    export = client.get(reverse("reports:report", args=["revenue"]), {**_period(), "export": "csv"})
    assert export.status_code == 403
    assert 'data-menu="reports"' not in client.get(reverse("backoffice:dashboard")).content.decode()


BUILDER = reverse("reports:builder")
BY_BRAND = {"dataset": "entries", "dimensions": ["brand"], "measures": ["sum:credit"]}


def test_builder_runs_a_definition_and_saves_it(as_role, revenue_ledger, ui_users):
    from reports.models import SavedReport

    client = as_role("accountant")
    query = {**BY_BRAND, "measures": ["count:"], "filter_field": "brand", "filter_op": "eq",
             "filter_value": "UIREV"}  # fmt: skip
    page = client.get(BUILDER, query).content.decode()
    assert 'id="report-table"' in page
    assert "<td>UIREV</td>" in page
    assert 'id="report-chart-data"' in page
    response = client.post(BUILDER, {**query, "name": "Entries per brand"})
    saved = SavedReport.objects.get()
    assert saved.owner == ui_users["accountant"]
    assert saved.definition["filters"] == [{"field": "brand", "op": "eq", "value": "UIREV"}]
    assert response["Location"].endswith(f"?saved={saved.pk}")
    reopened = client.get(response["Location"]).content.decode()
    assert "<td>UIREV</td>" in reopened
    export = client.get(BUILDER, {**query, "export": "csv"})
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert rows[1][0] == "UIREV"


def test_builder_names_a_bad_definition_on_the_form(as_role, db):
    body = (
        as_role("accountant")
        .get(BUILDER, {"dataset": "entries", "filter_field": "brand", "filter_op": "in"})
        .content.decode()
    )
    assert "data-refusal" in body
    assert 'id="report-table"' not in body


def test_operator_may_not_build_or_save(as_role, db):
    from reports.models import SavedReport

    client = as_role("operator")
    assert client.get(BUILDER, BY_BRAND).status_code == 403
    assert client.post(BUILDER, {**BY_BRAND, "name": "x"}).status_code == 403
    assert not SavedReport.objects.exists()
