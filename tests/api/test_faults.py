"""A lost database connection answers 503 service_unavailable with Retry-After, never a
bare 500; a retry with the same Idempotency-Key posts once; q2 tasks run again.

The connection is cut for real: the owner terminates the request's backend
(pg_terminate_backend) just before the statement named.
"""

from decimal import Decimal

import pytest
from django.db import IntegrityError, OperationalError
from django.test import override_settings
from django.utils import timezone
from psycopg import errors

from core.faults import database_connection_lost
from ledger.models import Hold, Transaction
from ledger.services import hold_create
from ledger.tasks import expire_holds
from tests.api.helpers import error_of, post
from tests.dbfaults import cut_connection_before, owner_connect
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _recording_the_response(sql: str) -> bool:
    """The INSERT of the Idempotency-Key's response: the posting's rows are written by then,
    in the same transaction, not yet committed (the posting and this INSERT run as prepared
    statements on ``core.hot_cursor``, out of Django's execute wrappers' sight)."""
    return sql.startswith("INSERT INTO") and "access_apiidempotencyrecord" in sql


def test_a_posting_cut_in_flight_answers_503_and_its_retry_posts_once(side_a):
    body = {"account": side_a.account.pk, "amount": "10.00", "brand": side_a.brand.pk}
    side_a.account.refresh_from_db()
    before = side_a.account.balance
    with cut_connection_before(_recording_the_response, hot_cursor=True) as cut:
        response = post(side_a.api, "/api/v1/debits/", body, key="cut-1")
    assert cut, "the statement was never reached"
    assert error_of(response) == (503, "service_unavailable")
    assert int(response["Retry-After"]) > 0
    assert not Transaction.objects.filter(kind="debit").exists()

    retried = post(side_a.api, "/api/v1/debits/", body, key="cut-1")
    assert retried.status_code == 201, retried.content
    again = post(side_a.api, "/api/v1/debits/", body, key="cut-1")
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert Transaction.objects.filter(kind="debit").count() == 1
    side_a.account.refresh_from_db()
    assert side_a.account.balance == before - Decimal("10.00")


def test_a_read_cut_in_flight_answers_503_too(side_a):
    # The account is read by a prepared statement (core.hot_cursor), not Django's cursor.
    with cut_connection_before(lambda sql: "accounts_account" in sql, hot_cursor=True) as cut:
        response = side_a.api.get(f"/api/v1/accounts/{side_a.account.pk}/balance/")
    assert cut
    assert error_of(response) == (503, "service_unavailable")
    assert "Retry-After" in response
    # The next request reconnects.
    assert side_a.api.get(f"/api/v1/accounts/{side_a.account.pk}/balance/").status_code == 200


def test_the_staff_admin_answers_503_html_when_the_connection_is_lost(client):
    user = UserFactory(is_staff=True, is_superuser=True)
    user.save()
    client.force_login(user)
    with cut_connection_before(lambda sql: "ledger_transaction" in sql) as cut:
        response = client.get("/admin/ledger/transaction/")
    assert cut
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert "Retry-After" in response
    assert client.get("/admin/ledger/transaction/").status_code == 200


def test_other_database_errors_are_not_called_unavailable(side_a):
    """Only a lost connection is a 503: the envelope is not a blanket over every error."""
    assert side_a.api.get("/api/v1/accounts/").status_code == 200  # a live connection
    assert not database_connection_lost(IntegrityError("duplicate key"))
    for cause in (errors.DeadlockDetected("deadlock"), errors.SerializationFailure("x")):
        wrapped = OperationalError(str(cause))
        wrapped.__cause__ = cause
        assert not database_connection_lost(wrapped)
    lost = OperationalError("terminating connection due to administrator command")
    lost.__cause__ = errors.AdminShutdown("terminating connection")
    assert database_connection_lost(lost)


@override_settings(BILLING_TASK_RETRY_BACKOFF=0.01)
def test_a_q2_task_whose_connection_is_lost_runs_again(side_a):
    hold = hold_create(account=side_a.account, amount="5.00", brand=side_a.brand)
    # Back-dated by the owner (the runtime role may only close a hold).
    with owner_connect() as owner:
        owner.execute(
            "UPDATE ledger_hold SET expires_at = now() - interval '1 minute' WHERE id = %s",
            [hold.pk],
        )
    assert Hold.objects.get(pk=hold.pk).expires_at < timezone.now()
    with cut_connection_before(lambda sql: "ledger_hold" in sql) as cut:
        expired = expire_holds()
    assert len(cut) == 1  # the first run was cut, the second ran through
    assert expired == 1
    assert Hold.objects.get(pk=hold.pk).status == Hold.Status.EXPIRED


@override_settings(BILLING_TASK_RETRY_BACKOFF=0.01, BILLING_TASK_RETRY_ATTEMPTS=2)
def test_a_q2_task_gives_up_after_its_attempts(side_a):
    hold = hold_create(account=side_a.account, amount="5.00", brand=side_a.brand)
    with owner_connect() as owner:
        owner.execute(
            "UPDATE ledger_hold SET expires_at = now() - interval '1 minute' WHERE id = %s",
            [hold.pk],
        )
    with (
        cut_connection_before(lambda sql: "ledger_hold" in sql, times=2) as cut,
        pytest.raises(OperationalError),
    ):
        expire_holds()
    assert len(cut) == 2
    assert Hold.objects.get(pk=hold.pk).status == Hold.Status.ACTIVE
