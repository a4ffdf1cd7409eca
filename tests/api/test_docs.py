"""The OpenAPI schema and the locally served docs."""

import re

import yaml

from tests.api.conftest import api_client


def test_schema_is_served_and_describes_errors(db):
    response = api_client().get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    debits = schema["paths"]["/api/v1/debits/"]["post"]
    assert {"201", "400", "401", "404", "409", "422", "429"} <= set(debits["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in debits["parameters"])
    amount = schema["components"]["schemas"]["ChargeCreateRequest"]["properties"]["amount"]
    assert amount["type"] == "string"
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"]["name"] == "Authorization"
    for path in schema["paths"]:
        assert path.startswith("/api/v1/"), path


def test_swagger_and_redoc_are_served_locally(db):
    for url in ("/api/docs/", "/api/redoc/"):
        response = api_client().get(url)
        assert response.status_code == 200
        html = response.content.decode()
        assert "drf_spectacular_sidecar" in html, url
        # Every script, stylesheet and image is served by this site: no CDN. (Not a plain
        # "cdn" substring test: the page embeds a random CSRF token.)
        assets = re.findall(r"""(?:src|href)\s*[=:]\s*["']([^"']+)""", html)
        assert assets, url
        assert [a for a in assets if "//" in a and not a.startswith("/static/")] == [], url


def test_unknown_api_path_is_a_json_404(side_a):
    response = side_a.api.get("/api/v1/nothing-here/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_options_is_not_offered(side_a):
    response = side_a.api.options("/api/v1/accounts/")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
