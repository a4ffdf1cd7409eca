"""Re-parenting under concurrency, and chain walks that meet a loop.

Two ``account_set_parent`` calls that each look fine alone can close a cycle together
(X under Y while Y's payer Z goes under W, whose payer is X): each must see the
other's link before deciding, so each locks the whole chain above the new payer.
Chain walks (the ledger's ``chain_of``, ``account_chain``, the parent check) never loop:
a loop that got into the data anyway is refused with ``account_chain_loop``.
"""

import threading
from decimal import Decimal

import pytest
from django.db import connection, transaction

from accounts.exceptions import InvalidAccountStructure
from accounts.models import Account
from accounts.services import account_create, account_set_parent
from ledger.selectors import account_chain
from ledger.services import debit_post, payment_post
from tests.factories import BrandFactory, ClientFactory
from tests.invoicing.locking import backend_pid, wait_until_blocked
from tests.ledger.concurrency import run_in_threads

WALK_TIMEOUT = 10


def roots_reachable() -> bool:
    """Every account reaches a root within the number of accounts (no loop)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH RECURSIVE up(start, id, steps) AS (
                SELECT id, parent_id, 1 FROM accounts_account WHERE parent_id IS NOT NULL
              UNION ALL
                SELECT u.start, a.parent_id, u.steps + 1
                FROM up u JOIN accounts_account a ON a.id = u.id
                WHERE a.parent_id IS NOT NULL AND u.steps < 50
            )
            SELECT count(*) FROM up WHERE steps >= 50
            """
        )
        return cursor.fetchone()[0] == 0


@pytest.mark.django_db(transaction=True)
def test_account_set_parent_concurrent_links_cannot_close_a_cycle():
    client = ClientFactory()
    x, y, z, w = (account_create(client=client) for _ in range(4))
    account_set_parent(account=y, parent=z)  # Y -> Z
    account_set_parent(account=w, parent=x)  # W -> X
    second_pid: list[int] = []
    first_linked = threading.Event()
    second_blocked: list[bool] = []

    def first():  # X -> Y (Y -> Z): fine alone
        with transaction.atomic():
            linked = account_set_parent(account=x, parent=y)
            first_linked.set()
            # Hold the link uncommitted until the second call waits for it (or clearly won't).
            second_blocked.append(wait_until_blocked(second_pid[0] if second_pid else None, 3))
        return linked

    def second():  # Z -> W (W -> X): fine alone, a cycle together with the first
        second_pid.append(backend_pid())
        assert first_linked.wait(30)
        return account_set_parent(account=z, parent=w)

    outcomes = run_in_threads([first, second])
    assert roots_reachable()
    assert [o.code for o in outcomes] == [None, "invalid_account_structure"]
    assert "cycle" in str(outcomes[1].error)
    assert second_blocked == [True]
    assert Account.objects.get(pk=z.pk).parent_id is None


@pytest.fixture
def loop(transactional_db):
    """Two accounts made each other's payer behind the services' back (a corrupt row)."""
    brand = BrandFactory()
    client = ClientFactory()
    a = account_create(client=client, brands=[brand])
    b = account_create(client=client, brands=[brand])
    with connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_account SET parent_id = %s WHERE id = %s", [b.pk, a.pk])
        cursor.execute("UPDATE accounts_account SET parent_id = %s WHERE id = %s", [a.pk, b.pk])
    yield a, b, brand
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE accounts_account SET parent_id = NULL WHERE id IN (%s, %s)", [a.pk, b.pk]
        )


def within(call, seconds=WALK_TIMEOUT):
    """Run ``call`` in a daemon thread (its own connection); its outcome, or fail the
    test when it has not returned in time (it would loop forever)."""
    outcome: dict = {}

    def work():
        try:
            outcome["value"] = call()
        except BaseException as exc:  # reported below
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the chain walk did not stop"
    return outcome


def test_chain_walks_refuse_a_loop_instead_of_looping(loop):
    a, b, brand = loop
    for call in (
        lambda: payment_post(account=a, amount=Decimal("10.00")),
        lambda: debit_post(account=b, amount=Decimal("1.00"), brand=brand),
        lambda: account_chain(a),
    ):
        outcome = within(call)
        assert isinstance(outcome.get("error"), InvalidAccountStructure), outcome
        assert outcome["error"].code == "account_chain_loop"
    other = account_create(client=ClientFactory())
    outcome = within(lambda: account_set_parent(account=other, parent=a))
    assert isinstance(outcome.get("error"), InvalidAccountStructure), outcome
    assert Account.objects.get(pk=other.pk).parent_id is None
