"""Report endpoints of reports under /api/v1/ (see ``billing_site.api.urls``)."""

from django.urls import path

from reports.api.views import DebtAgingView, ProjectionLagView, StatementView, TurnoverView

urlpatterns = [
    path("reports/statement/", StatementView.as_view(), name="report-statement"),
    path("reports/turnover/", TurnoverView.as_view(), name="report-turnover"),
    path("reports/debt-aging/", DebtAgingView.as_view(), name="report-debt-aging"),
    path("reports/lag/", ProjectionLagView.as_view(), name="report-lag"),
]
