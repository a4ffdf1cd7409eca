"""Failed staff logins are throttled (django-axes): by username and address, with a cool-off."""

import pytest
from django.conf import settings
from django.test import Client

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture
def staff():
    user = UserFactory(username="operator1", is_staff=True, is_superuser=True)
    user.set_password("right-password")
    user.save()
    return user


def _login(client: Client, username: str, password: str, address: str = "10.0.0.1"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def _logged_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


def test_after_the_limit_of_bad_passwords_the_right_one_is_refused(staff):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = _login(client, "operator1", "wrong")
        assert response.status_code in (200, 429)  # the form again, then the lockout
    locked = _login(client, "operator1", "right-password")
    assert locked.status_code == 429
    assert not _logged_in(client)


def test_the_lockout_is_per_username_and_address(staff):
    other = UserFactory(username="operator2", is_staff=True, is_superuser=True)
    other.set_password("other-password")
    other.save()
    attacker = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(attacker, "operator1", "wrong")
    # The same user from another address, and another user from the same one, still log in.
    elsewhere = Client()
    assert _login(elsewhere, "operator1", "right-password", address="10.0.0.2").status_code == 302
    assert _logged_in(elsewhere)
    colleague = Client()
    assert _login(colleague, "operator2", "other-password").status_code == 302
    assert _logged_in(colleague)


def test_a_successful_login_below_the_limit_resets_the_count(staff):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(client, "operator1", "wrong").status_code == 200
    assert _login(client, "operator1", "right-password").status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(client, "operator1", "wrong").status_code == 200
    assert _login(client, "operator1", "right-password").status_code == 302
    assert _logged_in(client)
