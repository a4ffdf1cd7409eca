"""The audit context reaches the triggers through every kind of statement Django sends, and
leaves nothing behind once its block has ended."""

from decimal import Decimal

import pytest
from django.db import connection
from psycopg import sql

from accounts.models import Account, AccountEvent, ClientEvent
from core.audit.context import acting
from core.caller import Caller
from tests.audit.conftest import metadata, written
from tests.factories import AccountFactory


@pytest.mark.django_db
def test_statements_of_every_shape_carry_the_actor():
    first, second = AccountFactory(), AccountFactory()
    with written() as w, acting(Caller.system("shapes")), connection.cursor() as cursor:
        cursor.execute(  # composed with psycopg.sql
            sql.SQL("UPDATE {} SET credit_limit = %s WHERE id = %s").format(
                sql.Identifier("accounts_account")
            ),
            [Decimal("5.00"), first.pk],
        )
        cursor.executemany(  # one settings statement, then the batch
            "UPDATE accounts_account SET write_off_limit_day = %s WHERE id = %s",
            [(Decimal("7.00"), first.pk), (Decimal("8.00"), second.pk)],
        )
        cursor.execute(  # named parameters
            "UPDATE accounts_client SET name = %(name)s WHERE id = %(id)s",
            {"name": "Named", "id": first.client_id},
        )
        cursor.execute(  # no parameters and a literal percent sign
            f"UPDATE accounts_client SET name = '100% Ltd' WHERE id = {second.client_id}"
        )
        cursor.execute(
            "UPDATE accounts_account SET name = %s WHERE id = %s RETURNING number",
            ["labelled", first.pk],
        )
        assert cursor.fetchone() == (first.number,) and cursor.rowcount == 1
        cursor.execute("SELECT 41 + 1")
        assert cursor.fetchone() == (42,)
    events = w.of(AccountEvent) + w.of(ClientEvent)
    assert len(events) == 6  # 4 account updates, 2 client updates
    assert {metadata(e)["actor"] for e in events} == {"system:shapes"}
    assert [e.pgh_diff for e in w.of(ClientEvent)] == [
        {"name": [first.client.name, "Named"]},
        {"name": [second.client.name, "100% Ltd"]},
    ]


@pytest.mark.django_db(transaction=True)
def test_in_autocommit_the_actor_ends_with_the_block():
    account = AccountFactory()
    with acting(Caller.system("short_lived")):
        Account.objects.filter(pk=account.pk).update(credit_limit=Decimal("3.00"))
    Account.objects.filter(pk=account.pk).update(credit_limit=Decimal("4.00"))
    first, second = AccountEvent.objects.filter(pgh_obj_id=account.pk, pgh_label="change").order_by(
        "pgh_id"
    )
    assert first.pgh_context.metadata["actor"] == "system:short_lived"
    assert second.pgh_context_id is None


@pytest.mark.django_db
def test_nested_blocks_share_one_context_and_the_outer_actor():
    account = AccountFactory()
    with written() as w, acting(Caller.system("outer")):
        with acting(Caller.system("inner"), reason_code="R1"):
            Account.objects.filter(pk=account.pk).update(credit_limit=Decimal("1.00"))
        Account.objects.filter(pk=account.pk).update(credit_limit=Decimal("2.00"))
    first, second = w.of(AccountEvent)
    assert first.pgh_context_id == second.pgh_context_id
    assert metadata(first)["actor"] == "system:outer"
    assert metadata(first)["reason_code"] == "R1"
