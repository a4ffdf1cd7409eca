"""Report endpoints of reports under /api/v1/ (see ``billing_site.api.urls``)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from reports.api.adhoc import AdhocDatasetsView, AdhocRunView, SavedReportViewSet
from reports.api.views import (
    DebtAgingView,
    InvoiceRunsView,
    PaymentsView,
    ProjectionLagView,
    RevenueView,
    SettlementsView,
    StatementPdfView,
    StatementView,
    TurnoverView,
)

router = SimpleRouter()
router.register("reports/saved", SavedReportViewSet, basename="saved-report")

urlpatterns = [
    path("reports/adhoc/", AdhocRunView.as_view(), name="report-adhoc"),
    path("reports/adhoc/datasets/", AdhocDatasetsView.as_view(), name="report-adhoc-datasets"),
    path("reports/statement/", StatementView.as_view(), name="report-statement"),
    path("reports/turnover/", TurnoverView.as_view(), name="report-turnover"),
    path("reports/debt-aging/", DebtAgingView.as_view(), name="report-debt-aging"),
    path("reports/statement/pdf/", StatementPdfView.as_view(), name="report-statement-pdf"),
    path("reports/revenue/", RevenueView.as_view(), name="report-revenue"),
    path("reports/payments/", PaymentsView.as_view(), name="report-payments"),
    path("reports/invoice-runs/", InvoiceRunsView.as_view(), name="report-invoice-runs"),
    path("reports/settlements/", SettlementsView.as_view(), name="report-settlements"),
    path("reports/lag/", ProjectionLagView.as_view(), name="report-lag"),
    *router.urls,
]
