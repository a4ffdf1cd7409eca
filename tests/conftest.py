"""Shared fixtures: real PostgreSQL, and the ledger's invariants checked after every DB test."""

import os

import pgtrigger
import pytest
from django.core.management import call_command
from django.core.management.commands import flush
from django.db import connections
from django.test.utils import override_settings

from access import services as access_services
from core.db import as_database_owner
from ledger.services import clear_system_account_cache
from ledger.verify import verify_ledger
from tests.ui_fixtures import (  # noqa: F401  (the staff UI's fixtures, for every test folder)
    as_role,
    ui_account,
    ui_brand,
    ui_posted,
    ui_roles,
    ui_service,
    ui_snapshot,
    ui_users,
)

DB_FIXTURES = {
    "db",
    "transactional_db",
    "django_db_reset_sequences",
    "django_db_serialized_rollback",
}


# The role the suite runs the application as when DATABASE_URL and MIGRATION_DATABASE_URL
# name the same user (its password is its name, for servers that ask for one).
TEST_RUNTIME_ROLE = os.environ.get("TEST_RUNTIME_ROLE", "billing_test_runtime")


def _runtime_login() -> tuple[str, str | None]:
    from django.conf import settings

    runtime = settings.DATABASES["default"]
    if runtime.get("USER") and runtime["USER"] != settings.BILLING_DATABASE_OWNER.get("USER"):
        return runtime["USER"], runtime.get("PASSWORD") or None
    return TEST_RUNTIME_ROLE, TEST_RUNTIME_ROLE


RUNTIME_ROLE, RUNTIME_PASSWORD = None, None


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """The test database is created and migrated by the owner (MIGRATION_DATABASE_URL)."""
    global RUNTIME_ROLE, RUNTIME_PASSWORD
    from django.conf import settings

    RUNTIME_ROLE, RUNTIME_PASSWORD = _runtime_login()
    owner = settings.BILLING_DATABASE_OWNER
    settings.DATABASES["default"].update(
        {key: owner.get(key) for key in ("USER", "PASSWORD", "HOST", "PORT")}
    )


def _owner_flush(original):
    def handle(self, **options):
        # TransactionTestCase empties the tables with TRUNCATE: the owner's right, and the
        # ledger's no_truncate triggers are stepped over for it (tests only).
        with (
            as_database_owner(options.get("database", "default")),
            pgtrigger.ignore(
                "ledger.Transaction:no_truncate",
                "ledger.Entry:no_truncate",
                "ledger.Hold:no_truncate",
                "ledger.IdempotencyKey:no_truncate",
            ),
        ):
            return original(self, **options)

    return handle


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Then the suite runs as the runtime role: the owner's login takes that role at
    connection start (``-c role=...``), with exactly the privileges setup_db_roles grants;
    ``core.db.as_database_owner`` switches back for what only the owner may do."""
    from django.conf import settings

    with django_db_blocker.unblock():
        call_command("setup_db_roles", role=RUNTIME_ROLE, password=RUNTIME_PASSWORD, verbosity=0)
    options = settings.DATABASES["default"].setdefault("OPTIONS", {})
    saved = options.get("options", "")
    options["options"] = f"{saved} -c role={RUNTIME_ROLE}".strip()
    original_flush = flush.Command.handle
    flush.Command.handle = _owner_flush(original_flush)
    connections.close_all()
    yield
    flush.Command.handle = original_flush
    options["options"] = saved
    connections.close_all()


@pytest.fixture
def runtime_role() -> tuple[str, str | None]:
    """The runtime role the suite runs as, and its password."""
    return RUNTIME_ROLE, RUNTIME_PASSWORD


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
