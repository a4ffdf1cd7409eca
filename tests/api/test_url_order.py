"""The API's apps are tried in an order of our choosing (hot routes first): safe only while
no path matches the patterns of two apps, which these tests check for every route."""

import re

from django.urls import URLPattern, URLResolver, resolve

from billing_site.api.urls import FIRST_APPS, v1_patterns


def _patterns(entries):
    for entry in entries:
        if isinstance(entry, URLResolver):
            yield from _patterns(entry.url_patterns)
        else:
            assert isinstance(entry, URLPattern)
            yield entry


def _sample(pattern: URLPattern) -> str:
    """A concrete path the pattern matches (each parameter given ``1``)."""
    text = str(pattern.pattern)
    text = re.sub(r"\(\?P<\w+>[^)]*\)", "1", text)  # regex routes
    text = re.sub(r"<(?:\w+:)?\w+>", "1", text)  # path() routes
    path = text.removeprefix("^").removesuffix("$")
    assert pattern.pattern.match(path), (pattern, path)
    return path


def _by_app() -> dict[str, list[URLPattern]]:
    return {include.urlconf_name.__name__: list(_patterns([include])) for include in v1_patterns}


def test_no_path_matches_two_apps_routes():
    by_app = _by_app()
    assert len(by_app) > 5
    for app, patterns in by_app.items():
        for pattern in patterns:
            path = _sample(pattern)
            for other, others in by_app.items():
                if other == app:
                    continue
                clash = [str(o.pattern) for o in others if o.pattern.match(path)]
                assert not clash, f"{path} ({app}) is also matched by {other}: {clash}"


def test_hot_apps_first_and_every_route_resolves_to_its_own_view():
    names = list(_by_app())
    assert names[: len(FIRST_APPS)] == [f"{app}.api.urls" for app in FIRST_APPS]
    for patterns in _by_app().values():
        for pattern in patterns:
            match = resolve(f"/api/v1/{_sample(pattern)}")
            assert match.func is pattern.callback, pattern


def test_hot_routes_resolve_to_the_ledger():
    assert resolve("/api/v1/accounts/7/balance/").url_name == "account-ledger-balance"
    assert resolve("/api/v1/debits/").url_name == "debit-list"
    assert resolve("/api/v1/accounts/7/").url_name == "account-detail"
    assert resolve("/api/v1/accounts/").url_name == "account-list"
