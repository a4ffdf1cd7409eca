"""System accounts are created on first use and their ids cached only once committed."""

import pytest
from django.db import transaction

from accounts.models import Account
from ledger.services import system_account_id


class _Rollback(Exception):
    pass


@pytest.mark.django_db
def test_system_account_id_found_in_a_rolled_back_transaction_is_not_cached():
    with pytest.raises(_Rollback), transaction.atomic():
        created = system_account_id(Account.Kind.CLEARING, "RUB", channel="cash")
        # The second call finds the row in the database; it must not cache an id
        # that the rollback below removes.
        assert system_account_id(Account.Kind.CLEARING, "RUB", channel="cash") == created
        raise _Rollback
    assert not Account.objects.filter(pk=created).exists()
    again = system_account_id(Account.Kind.CLEARING, "RUB", channel="cash")
    assert Account.objects.filter(pk=again, system_key="clearing:RUB:cash").exists()
