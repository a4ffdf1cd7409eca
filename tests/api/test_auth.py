"""Authentication, permissions, API keys and throttling."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from access.models import ApiKey
from access.services import api_key_authenticate, api_key_revoke
from tests.api.conftest import api_client
from tests.factories import BrandFactory, UserFactory


def test_request_without_credentials_is_401_with_challenge(db):
    response = api_client().get("/api/v1/accounts/")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Api-Key"


@pytest.mark.parametrize(
    "header", ["Api-Key nonsense", "Api-Key bk_abc.def", "Api-Key ", "api-key x y"]
)
def test_bad_api_key_is_401(side_a, header):
    client = api_client()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/accounts/")
    assert response.status_code == 401
    assert response.json()["code"] in {"authentication_failed", "not_authenticated"}
    assert set(response.json()) == {"code", "message", "details"}


def test_wrong_secret_with_a_real_prefix_is_401(side_a):
    prefix = side_a.raw_key.split(".")[0]
    response = api_client(prefix + ".not-the-secret").get("/api/v1/accounts/")
    assert response.status_code == 401


def test_revoked_key_is_401_at_once(side_a):
    assert side_a.api.get("/api/v1/accounts/").status_code == 200
    api_key_revoke(api_key=ApiKey.objects.get(partner=side_a.partner))
    response = side_a.api.get("/api/v1/accounts/")
    assert response.status_code == 401


def test_inactive_partner_key_is_401(side_a):
    side_a.partner.is_active = False
    side_a.partner.save()
    assert side_a.api.get("/api/v1/accounts/").status_code == 401


def test_key_is_stored_hashed_and_last_used_written_at_most_once_a_minute(side_a):
    key = ApiKey.objects.get(partner=side_a.partner)
    secret = side_a.raw_key.split(".", 1)[1]
    assert secret not in key.hashed_secret and len(key.hashed_secret) == 64
    assert key.last_used_at is None
    side_a.api.get("/api/v1/brands/")
    key.refresh_from_db()
    first = key.last_used_at
    assert first is not None
    side_a.api.get("/api/v1/brands/")
    key.refresh_from_db()
    assert key.last_used_at == first
    later = timezone.now() + timedelta(minutes=2)
    assert api_key_authenticate(side_a.raw_key, now=later) is not None
    key.refresh_from_db()
    assert key.last_used_at == later


def test_non_staff_session_is_403_and_staff_session_works(side_a, staff_api):
    from rest_framework.test import APIClient

    plain = APIClient()
    user = UserFactory(is_staff=False)
    user.save()
    plain.force_login(user)
    response = plain.get("/api/v1/accounts/")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert staff_api.get("/api/v1/accounts/").status_code == 200


def test_create_api_key_command_prints_the_key_alone_on_the_last_line(db, capsys):
    brands = [BrandFactory(code="FOOD"), BrandFactory(code="POWER")]
    call_command("create_api_key", "--partner", "Courier Co", "--brands", "FOOD,POWER")
    lines = capsys.readouterr().out.strip().splitlines()
    raw_key = lines[-1]
    assert raw_key.startswith("bk_") and " " not in raw_key
    principal = api_key_authenticate(raw_key)
    assert principal is not None and principal.partner_name == "Courier Co"
    assert principal.brand_ids == {b.pk for b in brands}
    stored = ApiKey.objects.get()
    assert raw_key.split(".", 1)[1] not in (stored.hashed_secret, stored.prefix)
    # The partner is reused, not duplicated, by a second key.
    call_command("create_api_key", "--partner", "Courier Co", "--brands", "FOOD")
    assert ApiKey.objects.filter(partner__name="Courier Co").count() == 2


def test_create_api_key_command_refuses_unknown_brands(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="NOPE"):
        call_command("create_api_key", "--partner", "X", "--brands", "NOPE")
    assert not ApiKey.objects.exists()


def test_throttle_answers_429_with_retry_after(side_a):
    with override_settings(BILLING_API_THROTTLE_RATES={"api_key": "3/minute"}):
        codes = [side_a.api.get("/api/v1/brands/").status_code for _ in range(4)]
        response = side_a.api.get("/api/v1/brands/")
    assert codes == [200, 200, 200, 429]
    assert response.status_code == 429
    assert response.json()["code"] == "throttled"
    assert 1 <= int(response["Retry-After"]) <= 60


def test_a_verified_key_is_trusted_for_a_few_seconds_without_a_query(side_a):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    assert side_a.api.get("/api/v1/brands/").status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert side_a.api.get("/api/v1/brands/").status_code == 200
    assert not [q for q in queries.captured_queries if "access_apikey" in q["sql"]]
    # Deactivating the partner reaches this process once the cache entry lapses.
    side_a.partner.is_active = False
    side_a.partner.save()
    from access import services

    services._authenticated.clear()
    assert side_a.api.get("/api/v1/brands/").status_code == 401
