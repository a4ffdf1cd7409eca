"""``POST /payments/`` with an ``external_id`` already posted: ``409 duplicate_payment`` naming
the original, with or without ``Idempotency-Key``; a true replay still replays. Over HTTP,
sequentially and with 20 parallel requests (threads, each its own database connection)."""

from __future__ import annotations

import threading
from collections import Counter
from decimal import Decimal

import pytest
from django.db import connection

from access.models import ApiIdempotencyRecord
from ledger.models import Transaction
from tests.api.conftest import api_client, make_side
from tests.api.helpers import error_of, post
from tests.factories import AccountFactory, UserFactory

PARALLEL = 20


def payment(account, external_id="bank-77", amount="100.00", channel="bank"):
    return {
        "account": account.pk,
        "amount": amount,
        "channel": channel,
        "external_id": external_id,
    }


def balance(account) -> Decimal:
    account.refresh_from_db()
    return account.balance


def test_the_same_external_id_again_is_409_naming_the_original(side_a):
    first = post(side_a.api, "/api/v1/payments/", payment(side_a.account))
    assert first.status_code == 201
    again = post(side_a.api, "/api/v1/payments/", payment(side_a.account, amount="5.00"))
    assert error_of(again) == (409, "duplicate_payment")
    body = again.json()
    assert body["details"] == {"transaction": first.json()["id"], "external_id": "bank-77"}
    assert str(first.json()["id"]) in body["message"]
    assert balance(side_a.account) == Decimal("1100.00")


def test_with_keys_a_replay_a_conflict_and_a_duplicate(side_a):
    first = post(side_a.api, "/api/v1/payments/", payment(side_a.account), key="k-1")
    replay = post(side_a.api, "/api/v1/payments/", payment(side_a.account), key="k-1")
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true"
    assert replay.content == first.content
    changed = post(
        side_a.api, "/api/v1/payments/", payment(side_a.account, amount="1.00"), key="k-1"
    )
    assert error_of(changed) == (409, "idempotency_conflict")
    other_key = post(side_a.api, "/api/v1/payments/", payment(side_a.account), key="k-2")
    assert error_of(other_key) == (409, "duplicate_payment")
    assert other_key.json()["details"]["transaction"] == first.json()["id"]
    no_key = post(side_a.api, "/api/v1/payments/", payment(side_a.account))
    assert error_of(no_key) == (409, "duplicate_payment")
    assert ApiIdempotencyRecord.objects.count() == 1
    assert balance(side_a.account) == Decimal("1100.00")


def test_two_partners_may_use_the_same_external_id(side_a, side_b):
    a = post(side_a.api, "/api/v1/payments/", payment(side_a.account))
    b = post(side_b.api, "/api/v1/payments/", payment(side_b.account))
    assert (a.status_code, b.status_code) == (201, 201)
    # A partner's namespace spans its channels and accounts.
    again = post(side_a.api, "/api/v1/payments/", payment(side_a.account, channel="card"))
    assert error_of(again) == (409, "duplicate_payment")


def test_staff_share_one_namespace_per_channel(staff_api, side_a):
    other = UserFactory(is_staff=True, is_superuser=True)
    other.save()
    colleague = api_client()
    colleague.force_login(other)
    second_account = AccountFactory(brands=[side_a.brand])
    first = post(staff_api, "/api/v1/payments/", payment(side_a.account))
    assert first.status_code == 201
    clash = post(colleague, "/api/v1/payments/", payment(second_account))
    assert error_of(clash) == (409, "duplicate_payment")
    assert clash.json()["details"]["transaction"] == first.json()["id"]
    card = post(colleague, "/api/v1/payments/", payment(second_account, channel="card"))
    assert card.status_code == 201
    # The partner's own namespace is apart from staff's.
    partner = post(side_a.api, "/api/v1/payments/", payment(side_a.account))
    assert partner.status_code == 201


# --------------------------------------------------------------------------- 20 in parallel


def _in_parallel(requests: list) -> list:
    """Send each request from its own thread (its own database connection) at once."""
    barrier = threading.Barrier(len(requests))
    responses: list = [None] * len(requests)
    errors: list = []

    def worker(index: int) -> None:
        client, body, key = requests[index]
        try:
            barrier.wait(timeout=30)
            responses[index] = post(client, "/api/v1/payments/", body, key=key)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return responses


def _outcomes(responses) -> Counter:
    return Counter(
        (r.status_code, r.json().get("code"), r.get("Idempotent-Replayed")) for r in responses
    )


@pytest.mark.django_db(transaction=True)
def test_twenty_parallel_payments_with_one_external_id_post_once():
    """Without keys, on two accounts of the partner: one posting, 19 duplicate_payment."""
    side = make_side("Parallel", funds="0")
    second = AccountFactory(brands=[side.brand])
    requests = [
        (api_client(side.raw_key), payment(side.account if i % 2 else second), None)
        for i in range(PARALLEL)
    ]
    responses = _in_parallel(requests)
    assert _outcomes(responses) == {
        (201, None, None): 1,
        (409, "duplicate_payment", None): PARALLEL - 1,
    }
    (winner,) = [r.json() for r in responses if r.status_code == 201]
    assert {r.json()["details"]["transaction"] for r in responses if r.status_code == 409} == {
        winner["id"]
    }
    assert Transaction.objects.filter(kind="payment").count() == 1
    assert balance(side.account) + balance(second) == Decimal("100.00")


@pytest.mark.django_db(transaction=True)
def test_twenty_parallel_payments_some_replaying_one_key():
    """Half carry one key and body (they replay the winner or win), half carry their own
    keys or none (they are duplicates): still exactly one posting."""
    side = make_side("Parallel keys", funds="0")
    requests = []
    for i in range(PARALLEL):
        key = "same-key" if i % 2 == 0 else (f"own-{i}" if i % 4 == 1 else None)
        requests.append((api_client(side.raw_key), payment(side.account), key))
    responses = _in_parallel(requests)
    assert Transaction.objects.filter(kind="payment").count() == 1
    (posted,) = Transaction.objects.filter(kind="payment")
    keyed = [r for (_, _, key), r in zip(requests, responses, strict=True) if key == "same-key"]
    others = [r for (_, _, key), r in zip(requests, responses, strict=True) if key != "same-key"]
    for response in others:
        if response.status_code == 201:  # an own key or none may also have won
            assert response.json()["id"] == posted.pk
        else:
            assert error_of(response) == (409, "duplicate_payment")
            assert response.json()["details"]["transaction"] == posted.pk
    for response in keyed:
        if response.status_code == 201:
            assert response.json()["id"] == posted.pk
        else:  # the winner had another key: this key's request is a duplicate too
            assert error_of(response) == (409, "duplicate_payment")
    winners = [r for r in responses if r.status_code == 201 and not r.get("Idempotent-Replayed")]
    assert len(winners) == 1
    if winners[0] in keyed:  # then every other same-key request replayed it
        assert all(r.status_code == 201 for r in keyed)
        assert sum(r.get("Idempotent-Replayed") == "true" for r in keyed) == len(keyed) - 1
        assert len({r.content for r in keyed}) == 1
    assert balance(side.account) == Decimal("100.00")


@pytest.mark.django_db(transaction=True)
def test_twenty_parallel_true_replays_answer_the_original():
    side = make_side("Parallel replays", funds="0")
    requests = [(api_client(side.raw_key), payment(side.account), "one-key")] * PARALLEL
    requests = [(api_client(side.raw_key), body, key) for _, body, key in requests]
    responses = _in_parallel(requests)
    assert _outcomes(responses) == {(201, None, None): 1, (201, None, "true"): PARALLEL - 1}
    assert len({r.content for r in responses}) == 1
    assert Transaction.objects.filter(kind="payment").count() == 1
    assert balance(side.account) == Decimal("100.00")
