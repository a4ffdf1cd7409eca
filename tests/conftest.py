"""Shared fixtures: real PostgreSQL, and the ledger's invariants checked after every DB test."""

import os

import pytest
from django.db import connections
from django.test.utils import override_settings

from access import services as access_services
from ledger.services import clear_system_account_cache
from ledger.verify import verify_ledger

DB_FIXTURES = {
    "db",
    "transactional_db",
    "django_db_reset_sequences",
    "django_db_serialized_rollback",
}


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hashing():
    """PBKDF2 costs most of a second per test user; tests need no strong hashes."""
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(autouse=True, scope="session")
def _media_root(tmp_path_factory):
    """Stored files (invoice PDFs) go to a temporary MEDIA_ROOT, in subprocesses too
    (a test's q2 cluster inherits the environment)."""
    media = tmp_path_factory.mktemp("media")
    previous = os.environ.get("MEDIA_ROOT")
    os.environ["MEDIA_ROOT"] = str(media)
    with override_settings(MEDIA_ROOT=media):
        yield media
    if previous is None:
        os.environ.pop("MEDIA_ROOT", None)
    else:
        os.environ["MEDIA_ROOT"] = previous


@pytest.fixture(autouse=True)
def _ledger_invariants(request):
    """After every test that used the database, every ``ledger_verify`` check must pass.

    The database fixture is requested from here so that this check runs before
    the test's transaction is rolled back (or its tables are flushed).
    """
    uses_db = request.node.get_closest_marker("django_db") or DB_FIXTURES & set(
        request.fixturenames
    )
    clear_system_account_cache()
    access_services._authenticated.clear()  # keys verified by an earlier test
    if not uses_db:
        yield
        return
    request.getfixturevalue("_django_db_helper")
    yield
    failures = verify_ledger()
    clear_system_account_cache()
    assert not failures, "ledger invariants broken:\n" + "\n".join(map(str, failures))


@pytest.fixture(autouse=True)
def _reporting_reads_the_test_transaction():
    """Reports read through the ``reporting`` alias (a mirror of ``default`` in tests).

    A test that runs inside one transaction would not see its own rows through a second
    connection, so in the test's thread ``reporting`` is the ``default`` connection
    itself; the replica test (tests/reports/test_replica.py) uses a real second server.
    """
    previous = connections["reporting"]
    connections["reporting"] = connections["default"]
    yield
    connections["reporting"] = previous
