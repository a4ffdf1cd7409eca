"""seed_demo: realistic, valid, deterministic demo data whose ledger passes every invariant."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Account, Client
from brands.models import Brand, Service
from core.db import as_database_owner
from core.validators import account_number_is_valid, inn_is_valid
from ledger.demo import seed_demo
from ledger.models import Hold, IdempotencyKey, Transaction
from ledger.verify import verify_ledger

pytestmark = pytest.mark.django_db

CLIENTS = 300


class _Rollback(Exception):
    pass


def _snapshot(now) -> dict:
    """Key fields of everything the bulk load wrote (ids and account numbers, which come
    from sequences, aside; so are memos, which quote account numbers)."""
    return {
        "clients": list(
            Client.objects.order_by("id").values_list("kind", "name", "tax_id", "phone", "email")
        ),
        "accounts": list(
            Account.objects.filter(kind=Account.Kind.CLIENT)
            .order_by("id")
            .values_list(
                "client__phone",
                "parent__client__phone",
                "status",
                "credit_limit",
                "credit_period_days",
                "write_off_limit_day",
                "write_off_limit_month",
            )
        ),
        "transactions": list(
            Transaction.objects.filter(created_at__lt=now)
            .order_by("id")
            .values_list(
                "kind",
                "amount",
                "created_at",
                "external_id",
                "subject_id",
                "account__client__phone",
            )
        ),
        "holds": list(
            Hold.objects.filter(created_at__lt=now)
            .order_by("id")
            .values_list("amount", "status", "captured_amount", "account__client__phone")
        ),
        "balances": list(
            Account.objects.filter(kind=Account.Kind.CLIENT)
            .order_by("id")
            .values_list("balance", "held", "negative_since")
        ),
    }


def _seed_and_roll_back(now, **options) -> dict:
    try:
        with transaction.atomic():
            with as_database_owner():  # the bulk load's DDL is the owner's
                seed_demo(clients=CLIENTS, seed=7, now=now, **options)
            assert verify_ledger() == []
            snapshot = _snapshot(now)
            raise _Rollback
    except _Rollback:
        return snapshot


def test_seed_demo_builds_valid_demo_data_whose_ledger_verifies():
    call_command("seed_demo", clients=CLIENTS, seed=3, verbosity=0)

    assert verify_ledger() == []
    assert Client.objects.count() == CLIENTS
    kinds = set(Client.objects.values_list("kind", flat=True))
    assert kinds == {Client.Kind.INDIVIDUAL, Client.Kind.LEGAL_ENTITY}
    for client in Client.objects.all():
        client.full_clean()
        if client.tax_id:
            assert inn_is_valid(client.tax_id)
        assert client.phone.startswith("+79") and len(client.phone) == 12
    accounts = Account.objects.filter(kind=Account.Kind.CLIENT)
    for account in accounts:
        account.full_clean()
        assert account_number_is_valid(account.number)
    assert accounts.filter(credit_limit__gt=0).exists()

    brands = Brand.objects.all()
    assert brands.count() == 3
    for brand in brands:
        brand.full_clean()
        assert brand.services.count() >= 3
    assert set(Service.objects.values_list("vat_rate", flat=True)) >= {
        Decimal("20.00"),
        Decimal("10.00"),
        Decimal("0.00"),
    }

    users = get_user_model().objects
    admin = users.get(username="admin")
    assert admin.is_superuser and admin.check_password("admin")
    operator = users.get(username="operator")
    assert operator.is_staff and not operator.is_superuser
    assert operator.groups.filter(name="Operators").exists()
    assert operator.has_perm("accounts.block_account")
    assert operator.has_perm("ledger.post_payment")
    assert operator.has_perm("ledger.reverse_transaction")
    assert not operator.has_perm("ledger.change_transaction")

    subaccounts = accounts.filter(parent__isnull=False).select_related("client", "parent__client")
    assert subaccounts.exists()
    for sub in subaccounts:
        assert sub.client.kind == Client.Kind.INDIVIDUAL
        assert sub.parent.client.kind == Client.Kind.LEGAL_ENTITY
        assert sub.write_off_limit_day is not None and sub.write_off_limit_month is not None
        assert sub.balance == 0 and sub.held == 0
    assert Transaction.objects.filter(entries__subaccount__isnull=False).exists()

    posted = set(Transaction.objects.values_list("kind", flat=True))
    assert posted >= {
        "payment",
        "debit",
        "accrual",
        "hold_capture",
        "refund",
        "reversal",
        "adjustment",
        "transfer",
    }
    statuses = set(Hold.objects.values_list("status", flat=True))
    assert statuses >= {Hold.Status.ACTIVE, Hold.Status.CAPTURED, Hold.Status.VOIDED}
    assert Hold.objects.filter(status="captured", captured_amount__lt=F("amount")).exists()
    assert IdempotencyKey.objects.exists()
    oldest = Transaction.objects.order_by("created_at").first().created_at
    assert oldest < timezone.now() - timedelta(days=150)
    assert accounts.filter(status=Account.Status.BLOCKED).exists()
    assert accounts.filter(balance__lt=0, negative_since__isnull=False).exists()


def test_seed_demo_same_seed_same_data_with_either_loading_path():
    now = timezone.now().replace(microsecond=0)
    bulk = _seed_and_roll_back(now, rebuild_indexes=True)
    rows = _seed_and_roll_back(now, rebuild_indexes=False)
    assert bulk["clients"] and bulk["transactions"]
    assert bulk == rows
    assert not Client.objects.exists()  # both runs were rolled back


def test_seed_demo_other_seed_other_data():
    now = timezone.now().replace(microsecond=0)
    first = _seed_and_roll_back(now)
    try:
        with transaction.atomic():
            with as_database_owner():
                seed_demo(clients=CLIENTS, seed=8, now=now)
            other = _snapshot(now)
            raise _Rollback
    except _Rollback:
        pass
    assert first["clients"] != other["clients"]


def test_seed_demo_if_empty_does_nothing_when_clients_exist():
    call_command("seed_demo", clients=20, seed=1, verbosity=0)
    clients, transactions = Client.objects.count(), Transaction.objects.count()
    call_command("seed_demo", clients=20, seed=1, if_empty=True, verbosity=0)
    assert Client.objects.count() == clients
    assert Transaction.objects.count() == transactions
    assert verify_ledger() == []
