"""The API under /api/v1/: every installed app with an ``api/urls.py`` adds its routes.

An app registers endpoints by shipping ``<app>/api/urls.py`` with a
``urlpatterns`` list (usually a DRF ``SimpleRouter``'s urls); nothing here has
to change for a new app. The schema and the locally served docs live under /api/.
"""

from importlib import import_module

from django.apps import apps
from django.conf import settings
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from core.api.views import api_not_found, bench_ping

# Apps whose routes are tried first: the hot requests (balance reads, debits) resolve after
# a pattern or two instead of after every pattern of the apps installed before. The order
# of apps changes nothing else: no path matches the patterns of two apps
# (tests/api/test_url_order.py), and the schema lists paths sorted.
FIRST_APPS = ("ledger",)


def _app_api_urls() -> list:
    patterns = []
    configs = sorted(apps.get_app_configs(), key=lambda config: config.name not in FIRST_APPS)
    for config in configs:
        if config.name == "billing_site":  # this very module
            continue
        try:
            module = import_module(f"{config.name}.api.urls")
        except ModuleNotFoundError as exc:
            if exc.name not in {f"{config.name}.api", f"{config.name}.api.urls"}:
                raise
            continue
        patterns.append(path("", include(module)))
    return patterns


v1_patterns = _app_api_urls()

urlpatterns = [
    path("v1/", include((v1_patterns, "api"), namespace="v1")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]
if settings.BILLING_API_BENCH_VIEWS:
    urlpatterns.append(path("_bench/ping/", bench_ping, name="api-bench-ping"))
urlpatterns.append(re_path(r"^(?P<path>[\s\S]*)$", api_not_found))
