"""Client and account services: validation, structure of sub-accounts, limits, status machine."""

from datetime import date
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.exceptions import (
    AccountHasFunds,
    InvalidAccountStructure,
    InvalidStatusTransition,
    PermissionDenied,
)
from accounts.models import Account, Client
from accounts.services import (
    STATUS_TRANSITIONS,
    account_block,
    account_close,
    account_create,
    account_set_parent,
    account_set_status,
    account_unblock,
    account_update,
    client_create,
    client_update,
)
from accounts.signals import account_status_changed
from core.validators import account_number_is_valid
from ledger.models import Hold
from ledger.services import hold_create, hold_void, payment_post, system_account_id
from tests.factories import AccountFactory, ClientFactory, UserFactory

pytestmark = pytest.mark.django_db

OPEN, BLOCKED, CLOSED = Account.Status.OPEN, Account.Status.BLOCKED, Account.Status.CLOSED


def row(account: Account) -> dict:
    """The account as stored, to prove that a refused change left it alone."""
    return Account.objects.filter(pk=account.pk).values().get()


# --------------------------------------------------------------------------- clients


@pytest.mark.parametrize(
    ("kind", "tax_id"),
    [
        (Client.Kind.INDIVIDUAL, "500100732259"),
        (Client.Kind.LEGAL_ENTITY, "7707083893"),
        (Client.Kind.INDIVIDUAL, ""),
    ],
)
def test_client_create_saves_a_valid_client(kind, tax_id):
    client = client_create(
        kind=kind, name="Ivan Petrov", tax_id=tax_id, email="ivan@example.com", external_ref="X-1"
    )
    stored = Client.objects.get(pk=client.pk)
    assert (stored.kind, stored.tax_id, stored.external_ref) == (kind, tax_id, "X-1")
    assert stored.status == Client.Status.ACTIVE


@pytest.mark.parametrize(
    ("fields", "error_field"),
    [
        ({"kind": "individual", "tax_id": "500100732258"}, "tax_id"),  # bad checksum
        ({"kind": "legal_entity", "tax_id": "770708389"}, "tax_id"),  # 9 digits
        ({"kind": "individual", "tax_id": "7707083893"}, "__all__"),  # an organisation's INN
        ({"kind": "legal_entity", "tax_id": "500100732259"}, "__all__"),  # a person's INN
        ({"kind": "legal_entity", "tax_id": "7707083893", "kpp": "77-10100"}, "kpp"),
        ({"kind": "individual", "email": "not-an-email"}, "email"),
        ({"kind": "robot"}, "kind"),
        ({"kind": "individual", "name": ""}, "name"),
    ],
)
def test_client_create_refuses_invalid_input_and_saves_nothing(fields, error_field):
    fields = {"name": "Someone", **fields}
    before = Client.objects.count()
    with pytest.raises(ValidationError) as info:
        client_create(**fields)
    assert error_field in info.value.message_dict
    assert Client.objects.count() == before


def test_client_create_refuses_unknown_fields():
    with pytest.raises(TypeError, match="balance"):
        client_create(kind="individual", name="X", balance=Decimal("1"))
    assert not Client.objects.exists()


def test_client_update_changes_the_given_fields():
    client = ClientFactory(name="Old name")
    client_update(client=client, name="New name", phone="+79990000000", status="suspended")
    stored = Client.objects.get(pk=client.pk)
    assert (stored.name, stored.phone, stored.status) == ("New name", "+79990000000", "suspended")


@pytest.mark.parametrize(
    "fields",
    [
        {"tax_id": "500100732258"},
        {"kind": Client.Kind.LEGAL_ENTITY},  # keeps its 12-digit INN: mismatch
        {"email": "nope"},
        {"status": "deleted"},
    ],
)
def test_client_update_validation_error_changes_nothing(fields):
    client = ClientFactory(name="Kept")
    stored_before = Client.objects.filter(pk=client.pk).values().get()
    with pytest.raises(ValidationError):
        client_update(client=client, name="Changed", **fields)
    assert Client.objects.filter(pk=client.pk).values().get() == stored_before


# --------------------------------------------------------------------------- account_create


def test_account_create_numbers_are_unique_with_valid_check_digits(brand):
    client = ClientFactory()
    accounts = [account_create(client=client, brands=[brand]) for _ in range(25)]
    numbers = [a.number for a in accounts]
    assert len(set(numbers)) == 25
    assert all(account_number_is_valid(n) for n in numbers)
    stored = Account.objects.get(pk=accounts[0].pk)
    assert stored.currency == settings.BILLING_DEFAULT_CURRENCY
    assert (stored.status, stored.balance, stored.held, stored.kind) == (
        OPEN,
        Decimal("0.00"),
        Decimal("0.00"),
        Account.Kind.CLIENT,
    )
    assert list(stored.brands.all()) == [brand]


def test_account_create_subaccount_of_another_client_inherits_currency(company):
    payer = account_create(client=company, currency="USD", credit_limit=Decimal("1000.00"))
    employee = ClientFactory()
    sub = account_create(
        client=employee, parent=payer, write_off_limit_day=Decimal("500.00"), name="Lunch card"
    )
    stored = Account.objects.get(pk=sub.pk)
    assert (stored.parent_id, stored.currency, stored.client_id) == (payer.pk, "USD", employee.pk)
    assert stored.write_off_limit_day == Decimal("500.00")
    assert stored.credit_limit == Decimal("0.00")


@pytest.mark.parametrize(
    "fields",
    [
        {"currency": "rub"},
        {"currency": "RUBL"},
        {"credit_limit": Decimal("-1.00")},
        {"write_off_limit_transaction": Decimal("0.00")},
        {"write_off_limit_day": Decimal("-5.00")},
        {"write_off_limit_month": Decimal("0.00")},
    ],
)
def test_account_create_refuses_invalid_fields_and_creates_nothing(fields):
    client = ClientFactory()
    with pytest.raises(ValidationError):
        account_create(client=client, **fields)
    assert not Account.objects.filter(client=client).exists()


@pytest.mark.parametrize(
    "credit_terms",
    [
        {"credit_limit": Decimal("100.00")},
        {"credit_period_days": 30},
        {"credit_period_days": 0},
        {"credit_expires_at": date(2030, 1, 1)},
    ],
)
def test_account_create_subaccount_with_credit_terms_is_refused(company, credit_terms):
    payer = account_create(client=company)
    with pytest.raises(InvalidAccountStructure) as info:
        account_create(client=company, parent=payer, **credit_terms)
    assert info.value.code == "invalid_account_structure"
    assert info.value.details["field"] == "credit_limit"
    assert not payer.children.exists()


def test_account_create_subaccount_currency_must_match_payer(company):
    payer = account_create(client=company, currency="RUB")
    with pytest.raises(InvalidAccountStructure) as info:
        account_create(client=company, parent=payer, currency="EUR")
    assert info.value.code == "invalid_account_structure"
    assert info.value.details["field"] == "parent"
    assert Account.objects.filter(client=company).count() == 1


def test_account_create_system_account_cannot_be_payer(company):
    clearing = Account.objects.get(
        pk=system_account_id(Account.Kind.CLEARING, "RUB", channel="bank")
    )
    with pytest.raises(InvalidAccountStructure, match="system account"):
        account_create(client=company, parent=clearing)
    assert not Account.objects.filter(client=company).exists()


def test_account_create_closed_payer_is_refused(company):
    payer = account_create(client=company)
    account_close(account=payer)
    with pytest.raises(InvalidAccountStructure, match="closed"):
        account_create(client=company, parent=payer)
    assert not payer.children.exists()


def test_account_create_depth_limit(company):
    levels = settings.BILLING_MAX_ACCOUNT_DEPTH
    chain = [account_create(client=company)]
    for _ in range(levels - 1):
        chain.append(account_create(client=company, parent=chain[-1]))
    assert len(chain) == levels
    count = Account.objects.count()
    with pytest.raises(InvalidAccountStructure, match=f"at most {levels} levels"):
        account_create(client=company, parent=chain[-1])
    assert Account.objects.count() == count


# --------------------------------------------------------------------------- account_set_parent


def test_account_set_parent_attaches_and_detaches(company):
    payer = account_create(client=company)
    employee = account_create(client=ClientFactory(), write_off_limit_day=Decimal("300.00"))
    account_set_parent(account=employee, parent=payer)
    assert Account.objects.get(pk=employee.pk).parent_id == payer.pk
    account_set_parent(account=employee, parent=None)
    assert Account.objects.get(pk=employee.pk).parent_id is None


@pytest.mark.parametrize("target", ["self", "child", "grandchild"])
def test_account_set_parent_refuses_cycles(company, target):
    top = account_create(client=company)
    child = account_create(client=company, parent=top)
    grandchild = account_create(client=company, parent=child)
    new_parent = {"self": top, "child": child, "grandchild": grandchild}[target]
    before = [row(a) for a in (top, child, grandchild)]
    with pytest.raises(InvalidAccountStructure, match="cycle") as info:
        account_set_parent(account=top, parent=new_parent)
    assert info.value.code == "invalid_account_structure"
    assert [row(a) for a in (top, child, grandchild)] == before


def test_account_set_parent_refuses_account_with_funds(company):
    payer = account_create(client=company)
    funded = account_create(client=ClientFactory())
    payment_post(account=funded, amount="10.00")
    with pytest.raises(AccountHasFunds) as info:
        account_set_parent(account=funded, parent=payer)
    assert info.value.code == "account_has_funds"
    assert Account.objects.get(pk=funded.pk).parent_id is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"credit_limit": Decimal("50.00")}, "credit terms"),
        ({"currency": "USD"}, "currency of its payer"),
    ],
)
def test_account_set_parent_refuses_incompatible_account(company, fields, message):
    payer = account_create(client=company, currency="RUB")
    other = account_create(client=ClientFactory(), **fields)
    with pytest.raises(InvalidAccountStructure, match=message):
        account_set_parent(account=other, parent=payer)
    assert Account.objects.get(pk=other.pk).parent_id is None


def test_account_set_parent_refuses_system_accounts(company):
    payer = account_create(client=company)
    clearing = Account.objects.get(
        pk=system_account_id(Account.Kind.CLEARING, "RUB", channel="card")
    )
    with pytest.raises(InvalidAccountStructure, match="System accounts have no payer"):
        account_set_parent(account=clearing, parent=payer)
    orphan = account_create(client=ClientFactory())
    with pytest.raises(InvalidAccountStructure, match="system account cannot be a payer"):
        account_set_parent(account=orphan, parent=clearing)
    assert Account.objects.get(pk=orphan.pk).parent_id is None


def test_account_set_parent_depth_limit_counts_the_moved_subtree(company):
    """Moving an account that has sub-accounts of its own must keep the whole tree in bounds."""
    levels = settings.BILLING_MAX_ACCOUNT_DEPTH
    chain = [account_create(client=company)]
    for _ in range(levels - 2):
        chain.append(account_create(client=company, parent=chain[-1]))
    mover = account_create(client=company)
    account_create(client=company, parent=mover)  # the mover has one level below it
    # Attached at the lowest level, the mover's child would sit at level ``levels + 1``.
    with pytest.raises(InvalidAccountStructure, match=f"at most {levels} levels"):
        account_set_parent(account=mover, parent=chain[-1])
    assert Account.objects.get(pk=mover.pk).parent_id is None
    # One level higher it fits exactly.
    account_set_parent(account=mover, parent=chain[-2])
    assert Account.objects.get(pk=mover.pk).parent_id == chain[-2].pk


# --------------------------------------------------------------------------- status machine


def _put_in_status(account: Account, status: str) -> None:
    if status == BLOCKED:
        account_block(account=account, reason="setup")
    elif status == CLOSED:
        account_close(account=account)


@pytest.mark.parametrize(
    ("start", "target"),
    # Sorted: a set's order depends on the hash seed, and xdist workers must agree on it.
    [(s, t) for s in STATUS_TRANSITIONS for t in sorted(STATUS_TRANSITIONS[s])],
)
def test_account_set_status_allowed_transitions(blocker, start, target):
    account = AccountFactory()
    _put_in_status(account, start)
    before = timezone.now()
    changed = account_set_status(
        account=account, status=target, reason="  court order 12/7  ", changed_by=blocker
    )
    stored = Account.objects.get(pk=account.pk)
    assert changed.status == stored.status == target
    assert stored.status_reason == "court order 12/7"
    assert stored.status_changed_by_id == blocker.pk
    assert before <= stored.status_changed_at <= timezone.now()


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (OPEN, OPEN),
        (BLOCKED, BLOCKED),
        (CLOSED, OPEN),
        (CLOSED, BLOCKED),
        (CLOSED, CLOSED),
        (OPEN, "frozen"),
        (BLOCKED, ""),
    ],
)
def test_account_set_status_refused_transitions(blocker, start, target):
    account = AccountFactory()
    _put_in_status(account, start)
    before = row(account)
    with pytest.raises(InvalidStatusTransition) as info:
        account_set_status(account=account, status=target, reason="why not", changed_by=blocker)
    assert info.value.code == "invalid_status_transition"
    assert row(account) == before


def test_account_set_status_transition_table_is_exhaustive():
    assert {s: sorted(t) for s, t in STATUS_TRANSITIONS.items()} == {
        OPEN: [BLOCKED, CLOSED],
        BLOCKED: [CLOSED, OPEN],
        CLOSED: [],
    }


@pytest.mark.parametrize("reason", ["", "   "])
def test_account_set_status_blocking_needs_a_reason(blocker, reason):
    account = AccountFactory()
    before = row(account)
    with pytest.raises(InvalidStatusTransition, match="reason") as info:
        account_block(account=account, reason=reason, blocked_by=blocker)
    assert info.value.details["field"] == "reason"
    assert row(account) == before


def test_account_set_status_unblock_clears_reason_and_sends_signal(blocker):
    account = AccountFactory()
    seen = []

    def receiver(sender, account, previous_status, changed_by, **kwargs):
        seen.append((account.pk, previous_status, account.status, changed_by))

    account_status_changed.connect(receiver, weak=False)
    try:
        account_block(account=account, reason="fraud check", blocked_by=blocker)
        account_unblock(account=account, unblocked_by=blocker)
    finally:
        account_status_changed.disconnect(receiver)
    assert seen == [(account.pk, OPEN, BLOCKED, blocker), (account.pk, BLOCKED, OPEN, blocker)]
    stored = Account.objects.get(pk=account.pk)
    assert (stored.status, stored.status_reason) == (OPEN, "")


@pytest.mark.parametrize("target", [BLOCKED, CLOSED])
def test_account_set_status_permission_denied_without_block_account(plain_user, target):
    account = AccountFactory()
    before = row(account)
    with pytest.raises(PermissionDenied) as info:
        account_set_status(account=account, status=target, reason="x", changed_by=plain_user)
    assert info.value.code == "permission_denied"
    assert row(account) == before


def test_account_set_status_superuser_and_system_may_change_status():
    superuser = UserFactory(is_staff=True, is_superuser=True)
    first, second = AccountFactory(), AccountFactory()
    account_block(account=first, reason="by admin", blocked_by=superuser)
    account_block(account=second, reason="by a system job")  # changed_by=None: the system
    assert Account.objects.get(pk=first.pk).status_changed_by_id == superuser.pk
    stored = Account.objects.get(pk=second.pk)
    assert (stored.status, stored.status_changed_by_id) == (BLOCKED, None)


def test_account_set_status_system_accounts_have_no_status():
    clearing = Account.objects.get(
        pk=system_account_id(Account.Kind.CLEARING, "RUB", channel="cash")
    )
    with pytest.raises(InvalidStatusTransition):
        account_block(account=clearing, reason="no")
    assert Account.objects.get(pk=clearing.pk).status == OPEN


@pytest.mark.parametrize("start", [OPEN, BLOCKED])
def test_account_set_status_closing_needs_zero_balance(start):
    account = AccountFactory()
    payment_post(account=account, amount="0.01")
    _put_in_status(account, start)
    before = row(account)
    with pytest.raises(AccountHasFunds) as info:
        account_close(account=account)
    assert info.value.code == "account_has_funds"
    assert info.value.details["balance"] == "0.01"
    assert row(account) == before


def test_account_set_status_closing_needs_no_holds(brand):
    # Zero balance, but a hold on the credit line: held alone must stop the closing.
    account = AccountFactory(brands=[brand], credit_limit=Decimal("100.00"))
    hold = hold_create(account=account, amount="20.00", brand=brand)
    before = row(account)
    assert (before["balance"], before["held"]) == (Decimal("0.00"), Decimal("20.00"))
    with pytest.raises(AccountHasFunds) as info:
        account_close(account=account)
    assert info.value.details["held"] == "20.00"
    assert row(account) == before
    hold_void(hold=hold)
    account_close(account=account)
    assert Account.objects.get(pk=account.pk).status == CLOSED


def test_account_set_status_closing_subaccount_with_active_hold_is_refused(brand):
    payer = AccountFactory(brands=[brand])
    sub = AccountFactory(brands=[brand], parent=payer)
    payment_post(account=payer, amount="50.00")
    hold = hold_create(account=sub, amount="30.00", brand=brand)
    before = row(sub)
    with pytest.raises(AccountHasFunds) as info:
        account_close(account=sub)
    assert info.value.code == "account_has_funds"
    assert row(sub) == before
    hold_void(hold=hold)
    account_close(account=sub)
    assert Account.objects.get(pk=sub.pk).status == CLOSED
    assert Hold.objects.get(pk=hold.pk).status == Hold.Status.VOIDED


@pytest.mark.parametrize("child_status", [OPEN, BLOCKED])
def test_account_set_status_closing_needs_no_open_children(child_status):
    payer = AccountFactory()
    child = AccountFactory(parent=payer)
    _put_in_status(child, child_status)
    with pytest.raises(AccountHasFunds) as info:
        account_close(account=payer)
    assert info.value.details["open_children"] is True
    assert Account.objects.get(pk=payer.pk).status == OPEN
    account_close(account=child)
    account_close(account=payer)
    assert Account.objects.get(pk=payer.pk).status == CLOSED


# --------------------------------------------------------------------------- account_update


def test_account_update_sets_limits_and_brands(brand):
    account = AccountFactory()
    updated = account_update(
        account=account,
        brands=[brand],
        credit_limit=Decimal("5000.00"),
        credit_period_days=30,
        credit_expires_at=date(2027, 12, 31),
        write_off_limit_transaction=Decimal("1000.00"),
        write_off_limit_day=Decimal("3000.00"),
        write_off_limit_month=Decimal("20000.00"),
        name="Main",
    )
    stored = Account.objects.get(pk=account.pk)
    assert (
        stored.credit_limit,
        stored.credit_period_days,
        stored.credit_expires_at,
        stored.write_off_limit_transaction,
        stored.write_off_limit_day,
        stored.write_off_limit_month,
        stored.name,
    ) == (
        Decimal("5000.00"),
        30,
        date(2027, 12, 31),
        Decimal("1000.00"),
        Decimal("3000.00"),
        Decimal("20000.00"),
        "Main",
    )
    assert list(stored.brands.all()) == [brand]
    assert updated.credit_limit == Decimal("5000.00")
    # Clearing a limit (None) means "no limit".
    account_update(account=account, write_off_limit_day=None)
    assert Account.objects.get(pk=account.pk).write_off_limit_day is None


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"credit_limit": Decimal("-0.01")}, ValidationError),
        ({"write_off_limit_transaction": Decimal("0.00")}, ValidationError),
        ({"write_off_limit_month": Decimal("-10.00")}, ValidationError),
        ({"credit_limit": Decimal("1.001")}, ValidationError),
        ({"write_off_limit_day": Decimal("10000000000000000.00")}, ValidationError),
    ],
)
def test_account_update_invalid_limits_change_nothing(fields, error):
    account = AccountFactory(write_off_limit_day=Decimal("100.00"))
    before = row(account)
    with pytest.raises(error):
        account_update(account=account, name="changed", **fields)
    assert row(account) == before


@pytest.mark.parametrize(
    "fields",
    [
        {"credit_limit": Decimal("1.00")},
        {"credit_period_days": 5},
        {"credit_expires_at": date(2030, 1, 1)},
    ],
)
def test_account_update_subaccount_gets_no_credit_terms(fields):
    sub = AccountFactory(parent=AccountFactory())
    before = row(sub)
    with pytest.raises(InvalidAccountStructure) as info:
        account_update(account=sub, **fields)
    assert info.value.code == "invalid_account_structure"
    assert row(sub) == before


@pytest.mark.parametrize("field", ["balance", "held", "status", "parent", "currency", "number"])
def test_account_update_refuses_running_state_and_structure_fields(field):
    account = AccountFactory()
    before = row(account)
    with pytest.raises(TypeError, match=field):
        account_update(account=account, **{field: "x"})
    assert row(account) == before
