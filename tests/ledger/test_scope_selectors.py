"""Scope by brand and by author in ledger.selectors: the database rule (querysets) and the
Python rule for one posting (webhooks, redaction) give the same answers on every mix of
account links, posting brand and author."""

from itertools import product

import pytest

from accounts.selectors import account_brand_ids
from core.api.scope import Scope
from core.caller import Caller
from core.errors import DomainError
from ledger.models import Hold, Transaction
from ledger.selectors import (
    entries_in_scope,
    holds_in_scope,
    holds_settleable_by,
    readable_through,
    transactions_in_scope,
    transactions_reversible_by,
)
from ledger.services import debit_post, hold_create, payment_post, transfer_post
from tests.factories import AccountFactory, BrandFactory

pytestmark = pytest.mark.django_db

ME, OTHER = 101, 202


def readable(scope: Scope, posting: Transaction | Hold) -> bool:
    """The one-row rule: readable through any of the posting's accounts."""
    sides = [posting.account_id, getattr(posting, "counter_account_id", None)]
    brands = account_brand_ids([pk for pk in sides if pk])
    return any(
        readable_through(
            scope, account_brands=brands[pk], brand_id=posting.brand_id, caller=posting.caller
        )
        for pk in brands
    )


@pytest.fixture
def mix():
    """Accounts linked to the scope's brand, another brand, both, or none; postings on each
    with every brand and author the ledger accepts, and transfers between them."""
    mine, theirs = BrandFactory(), BrandFactory()
    links = {"mine": [mine], "theirs": [theirs], "both": [mine, theirs], "none": []}
    accounts = {name: AccountFactory(brands=brands) for name, brands in links.items()}
    authors = [Caller.for_partner(ME), Caller.for_partner(OTHER), Caller.system("test")]
    for account, caller in product(accounts.values(), authors):
        payment_post(account=account, amount="100.00", channel="bank", caller=caller)
        for brand in (mine, theirs):
            try:
                debit_post(account=account, amount="1.00", brand=brand, caller=caller)
                hold_create(account=account, amount="1.00", brand=brand, caller=caller)
            except DomainError:
                pass  # a brand the account is not linked to
    for (source, target), caller in product(product(accounts.values(), repeat=2), authors):
        if source.pk != target.pk:
            transfer_post(from_account=source, to_account=target, amount="1.00", caller=caller)
    scope = Scope(brand_ids=frozenset({mine.pk}), partner_id=ME, caller=Caller.for_partner(ME))
    return scope, accounts, mine


def test_queryset_and_one_row_rules_agree_for_transactions_and_holds(mix):
    scope, _, _ = mix
    in_scope = set(transactions_in_scope(scope).values_list("pk", flat=True))
    every = list(Transaction.objects.all())
    assert len(every) > 50
    assert {t.pk for t in every if readable(scope, t)} == in_scope
    holds_seen = set(holds_in_scope(scope).values_list("pk", flat=True))
    assert {h.pk for h in Hold.objects.all() if readable(scope, h)} == holds_seen
    assert 0 < len(in_scope) < len(every) and 0 < len(holds_seen) < Hold.objects.count()


def test_the_rules_read_as_the_contract_says(mix):
    scope, accounts, mine = mix
    visible = transactions_in_scope(scope)
    for txn in Transaction.objects.exclude(kind="transfer"):
        account = next(name for name, a in accounts.items() if a.pk == txn.account_id)
        expected = account == "mine" or (
            account == "both" and (txn.brand_id == mine.pk or txn.caller == f"partner:{ME}")
        )
        assert visible.filter(pk=txn.pk).exists() == expected, (account, txn.kind, txn.caller)


def test_a_partner_acts_only_on_what_its_keys_posted(mix):
    scope, _, _ = mix
    reversible = transactions_reversible_by(scope)
    assert reversible.exists()
    assert set(reversible.values_list("caller", flat=True)) == {f"partner:{ME}"}
    assert set(reversible.values_list("pk", flat=True)) <= set(
        transactions_in_scope(scope).values_list("pk", flat=True)
    )
    settleable = holds_settleable_by(scope)
    assert settleable.exists()
    assert set(settleable.values_list("caller", flat=True)) == {f"partner:{ME}"}
    staff = Scope(brand_ids=None, partner_id=None, caller=Caller.system("staff"))
    assert transactions_reversible_by(staff).count() == Transaction.objects.count()


def test_history_of_a_shared_account_keeps_only_readable_postings(mix):
    scope, accounts, mine = mix
    shared = accounts["both"]
    kept = entries_in_scope(scope, shared).select_related("transaction")
    assert kept.exists()
    for entry in kept:
        assert entry.transaction.brand_id == mine.pk or entry.transaction.caller == f"partner:{ME}"
    own = accounts["mine"]
    assert entries_in_scope(scope, own).count() == own.entries.count()
