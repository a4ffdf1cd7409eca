"""Who may touch what (API.md): two partners on one shared account, over HTTP.

Partner A and partner B each act for their own brand; the shared account is
linked to both brands. Each partner reads only the postings and holds that
carry its brand or that its own keys posted, acts (reverse, capture, void)
only on what its own keys posted, cannot change the shared account or client
(403 ``shared_object``), never lifts the operator's block (403
``blocked_by_staff``) and cannot move sub-accounts between payers that are not
wholly its own. After every refusal nothing moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest

from accounts.models import Account, Client
from accounts.services import account_block, account_set_parent
from core.caller import Caller
from ledger.models import Transaction
from ledger.services import payment_post, transfer_post
from tests.api.helpers import error_of, post
from tests.factories import AccountFactory, ClientFactory, UserFactory

# --------------------------------------------------------------------------- the world


@dataclass
class Shared:
    account: Account
    client: Client
    a_debit: int
    b_debit: int
    b_payment: int
    operator_payment: int
    a_hold: int
    b_hold: int


def _created(response) -> int:
    assert response.status_code == 201, response.json()
    return response.json()["id"]


@pytest.fixture
def operator(db):
    user = UserFactory(is_staff=True, is_superuser=True)
    user.save()
    return user


@pytest.fixture
def shared(side_a, side_b, operator) -> Shared:
    """An account linked to A's and B's brands with postings by A, by B and by the operator."""
    account = AccountFactory(brands=[side_a.brand, side_b.brand])
    operator_payment = payment_post(
        account=account, amount="1000.00", channel="bank", caller=Caller.for_user(operator)
    ).pk

    def charge(side, path, amount):
        body = {"account": account.pk, "amount": amount, "brand": side.brand.pk}
        return _created(post(side.api, path, body))

    return Shared(
        account=account,
        client=account.client,
        a_debit=charge(side_a, "/api/v1/debits/", "10.00"),
        b_debit=charge(side_b, "/api/v1/debits/", "20.00"),
        b_payment=_created(
            post(
                side_b.api,
                "/api/v1/payments/",
                {"account": account.pk, "amount": "30.00", "channel": "card"},
            )
        ),
        operator_payment=operator_payment,
        a_hold=charge(side_a, "/api/v1/holds/", "5.00"),
        b_hold=charge(side_b, "/api/v1/holds/", "6.00"),
    )


def _ids(api, path: str, **query) -> set[int]:
    response = api.get(path, {"page_size": 500, **query})
    assert response.status_code == 200, response.json()
    return {row["id"] for row in response.json()["results"]}


# --------------------------------------------------------------------------- reading


def test_shared_account_each_partner_reads_only_its_brands_or_its_own_postings(
    side_a, side_b, shared, staff_api
):
    account = shared.account.pk
    missing = side_a.api.get("/api/v1/transactions/999999999/").json()
    for side, mine, theirs in (
        (side_a, {shared.a_debit}, {shared.b_debit, shared.b_payment, shared.operator_payment}),
        (side_b, {shared.b_debit, shared.b_payment}, {shared.a_debit, shared.operator_payment}),
    ):
        for txn in mine:
            assert side.api.get(f"/api/v1/transactions/{txn}/").status_code == 200
        for txn in theirs:
            response = side.api.get(f"/api/v1/transactions/{txn}/")
            assert response.status_code == 404 and response.json() == missing, txn
        assert _ids(side.api, "/api/v1/transactions/", account=account) == mine
        assert not _ids(side.api, "/api/v1/transactions/") & theirs
        # The account itself and its balance are readable by both.
        assert side.api.get(f"/api/v1/accounts/{account}/").status_code == 200
        assert side.api.get(f"/api/v1/accounts/{account}/balance/").status_code == 200
    assert _ids(side_a.api, "/api/v1/holds/", account=account) == {shared.a_hold}
    assert _ids(side_b.api, "/api/v1/holds/", account=account) == {shared.b_hold}
    assert side_a.api.get(f"/api/v1/holds/{shared.b_hold}/").status_code == 404
    assert side_b.api.get(f"/api/v1/holds/{shared.a_hold}/").status_code == 404
    everything = {
        shared.a_debit,
        shared.b_debit,
        shared.b_payment,
        shared.operator_payment,
    }
    assert _ids(staff_api, "/api/v1/transactions/", account=account) == everything
    assert _ids(staff_api, "/api/v1/holds/", account=account) == {shared.a_hold, shared.b_hold}


def test_shared_account_history_lists_only_the_readable_postings(side_a, side_b, shared, staff_api):
    url = f"/api/v1/accounts/{shared.account.pk}/entries/"

    def transactions(api) -> list[int]:
        return [e["transaction"] for e in api.get(url, {"page_size": 500}).json()["results"]]

    assert transactions(side_a.api) == [shared.a_debit]
    assert transactions(side_b.api) == [shared.b_payment, shared.b_debit]
    assert sorted(transactions(staff_api)) == sorted(
        [shared.a_debit, shared.b_debit, shared.b_payment, shared.operator_payment]
    )
    # An account that is not shared shows its whole history, whoever posted.
    own = side_a.api.get(f"/api/v1/accounts/{side_a.account.pk}/entries/").json()["results"]
    assert [e["kind"] for e in own] == ["payment"]  # the operator's funding payment


def test_a_partner_still_reads_everything_on_an_account_only_its_brands_use(side_a, operator):
    payment = payment_post(
        account=side_a.account, amount="5.00", channel="cash", caller=Caller.for_user(operator)
    )
    assert side_a.api.get(f"/api/v1/transactions/{payment.pk}/").status_code == 200


# --------------------------------------------------------------------------- acting


@pytest.mark.parametrize(
    "who,path",
    [
        ("a", "/api/v1/transactions/{b_debit}/reverse/"),
        ("a", "/api/v1/transactions/{b_payment}/reverse/"),
        ("a", "/api/v1/transactions/{operator_payment}/reverse/"),
        ("b", "/api/v1/transactions/{a_debit}/reverse/"),
        ("a", "/api/v1/holds/{b_hold}/capture/"),
        ("a", "/api/v1/holds/{b_hold}/void/"),
        ("b", "/api/v1/holds/{a_hold}/capture/"),
        ("b", "/api/v1/holds/{a_hold}/void/"),
    ],
)
def test_partner_reverses_captures_and_voids_only_what_its_keys_posted(
    side_a, side_b, shared, unchanged, who, path
):
    side = side_a if who == "a" else side_b
    url = path.format(**vars(shared))
    with unchanged():
        response = post(side.api, url, {"reason": "not mine"}, key=f"k-{who}-{url}")
        assert error_of(response) == (404, "not_found"), response.json()


def test_partner_cannot_reverse_a_payment_it_reads_but_did_not_post(side_a, unchanged):
    """The 1,000.00 that funded A's own account was posted by the operator: A reads it
    (the account is not shared) but may not reverse it."""
    funding = Transaction.objects.get(account=side_a.account, kind="payment")
    assert side_a.api.get(f"/api/v1/transactions/{funding.pk}/").status_code == 200
    with unchanged():
        response = post(side_a.api, f"/api/v1/transactions/{funding.pk}/reverse/", {"reason": "x"})
        assert error_of(response) == (404, "not_found")


def test_partner_reverses_captures_and_voids_its_own_postings_on_the_shared_account(side_a, shared):
    reversal = post(side_a.api, f"/api/v1/transactions/{shared.a_debit}/reverse/", {"reason": "r"})
    assert reversal.status_code == 201, reversal.json()
    captured = post(side_a.api, f"/api/v1/holds/{shared.a_hold}/capture/", {"amount": "2.00"})
    assert captured.status_code == 201, captured.json()
    # Its reversal and its capture are its own too: readable on the shared account.
    ids = _ids(side_a.api, "/api/v1/transactions/", account=shared.account.pk)
    assert {reversal.json()["id"], captured.json()["id"]} <= ids


# --------------------------------------------------------------------------- transfers


def test_transfer_entries_hide_the_side_outside_scope(side_a, side_b, operator, staff_api):
    """The operator moves money from B's account to A's: each partner sees its own side
    in full and the other side without payer and balance_after."""
    txn = transfer_post(
        from_account=side_b.account,
        to_account=side_a.account,
        amount="40.00",
        caller=Caller.for_user(operator),
    )
    full = staff_api.get(f"/api/v1/transactions/{txn.pk}/").json()
    by_account = {e["account"]: e for e in full["entries"]}
    assert set(by_account) == {side_a.account.pk, side_b.account.pk}
    for side, other in ((side_a, side_b), (side_b, side_a)):
        seen = side.api.get(f"/api/v1/transactions/{txn.pk}/")
        assert seen.status_code == 200
        entries = {e["id"]: e for e in seen.json()["entries"]}
        own = by_account[side.account.pk]
        hidden = by_account[other.account.pk]
        assert entries[own["id"]] == own  # its own side in full
        assert entries[hidden["id"]]["account"] is None
        assert entries[hidden["id"]]["balance_after"] is None
        assert entries[hidden["id"]]["amount"] == hidden["amount"]
        listed = side.api.get("/api/v1/transactions/", {"kind": "transfer"}).json()["results"]
        assert listed == [seen.json()]  # the list redacts exactly like the detail


def test_operators_transfer_out_of_the_shared_account(side_a, side_b, shared, operator):
    """From the shared account to A's own: A reads it through its own account only (the
    shared side, neither of its brands nor its posting, is redacted); B reads neither side."""
    txn = transfer_post(
        from_account=shared.account,
        to_account=side_a.account,
        amount="25.00",
        caller=Caller.for_user(operator),
    )
    seen = side_a.api.get(f"/api/v1/transactions/{txn.pk}/")
    assert seen.status_code == 200
    entries = {e["amount"]: e for e in seen.json()["entries"]}
    assert entries["-25.00"]["account"] is None and entries["-25.00"]["balance_after"] is None
    assert entries["25.00"]["account"] == side_a.account.pk
    assert entries["25.00"]["balance_after"] == "1025.00"
    assert side_b.api.get(f"/api/v1/transactions/{txn.pk}/").status_code == 404
    assert txn.pk not in _ids(side_b.api, "/api/v1/transactions/")
    history = side_a.api.get(f"/api/v1/accounts/{shared.account.pk}/entries/").json()
    assert txn.pk not in [e["transaction"] for e in history["results"]]


def test_transfer_posted_by_the_partner_shows_both_sides(side_a):
    other = AccountFactory(brands=[side_a.brand])
    response = post(
        side_a.api,
        "/api/v1/transfers/",
        {"from_account": side_a.account.pk, "to_account": other.pk, "amount": "15.00"},
    )
    assert response.status_code == 201
    seen = side_a.api.get(f"/api/v1/transactions/{response.json()['id']}/").json()
    assert all(e["account"] and e["balance_after"] for e in seen["entries"])
    assert seen == response.json()


# --------------------------------------------------------------------------- changing


SHARED_ACCOUNT_CHANGES = [
    ("patch", "/api/v1/accounts/{account}/", {"name": "renamed"}),
    ("patch", "/api/v1/accounts/{account}/", {"credit_limit": "100000.00"}),
    ("patch", "/api/v1/accounts/{account}/", {"credit_period_days": 90}),
    ("patch", "/api/v1/accounts/{account}/", {"write_off_limit_day": "1.00"}),
    ("patch", "/api/v1/accounts/{account}/", {"write_off_limit_transaction": None}),
    ("patch", "/api/v1/accounts/{account}/", {"parent": "{payer}"}),
    ("patch", "/api/v1/accounts/{account}/", {"name": "x", "brands": ["{brand}"]}),
    ("post", "/api/v1/accounts/{account}/block/", {"reason": "fraud"}),
    ("patch", "/api/v1/clients/{client}/", {"email": "new@example.com"}),
    ("patch", "/api/v1/clients/{client}/", {"status": "archived"}),
    ("patch", "/api/v1/clients/{client}/", {"name": "Someone Else"}),
]


@pytest.mark.parametrize("who", ["a", "b"])
@pytest.mark.parametrize("method,path,body", SHARED_ACCOUNT_CHANGES)
def test_changing_a_shared_account_or_client_is_403_shared_object(
    side_a, side_b, shared, unchanged, who, method, path, body
):
    side = side_a if who == "a" else side_b
    payer = AccountFactory(brands=[side.brand])  # wholly the partner's own
    values = {
        "account": shared.account.pk,
        "client": shared.client.pk,
        "payer": payer.pk,
        "brand": side.brand.code,
    }

    def fill(value):
        if isinstance(value, str) and value.startswith("{"):
            filled = value.format(**values)
            return int(filled) if filled.isdigit() else filled
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    url = path.format(**values)
    data = {k: fill(v) for k, v in body.items()}
    with unchanged():
        response = getattr(side.api, method)(url, data, format="json")
        assert error_of(response) == (403, "shared_object"), response.json()


def test_unblocking_a_shared_account_is_403_shared_object(side_a, side_b, shared, unchanged):
    # Even a block that a partner set: the shared account is the operator's to change.
    account_block(
        account=shared.account, reason="partner asked", caller_ref=f"partner:{side_a.partner.pk}"
    )
    with unchanged():
        for side in (side_a, side_b):
            response = post(side.api, f"/api/v1/accounts/{shared.account.pk}/unblock/")
            assert error_of(response) == (403, "shared_object")


def test_a_client_with_an_account_on_another_brand_is_shared(side_a, side_b, unchanged):
    client = ClientFactory()
    AccountFactory(client=client, brands=[side_a.brand])
    AccountFactory(client=client, brands=[side_b.brand])
    with unchanged():
        response = side_a.api.patch(f"/api/v1/clients/{client.pk}/", {"phone": "+7"}, format="json")
        assert error_of(response) == (403, "shared_object")
    # A client whose accounts all sit on the partner's brands stays its own to change.
    own = side_a.api.patch(
        f"/api/v1/clients/{side_a.account.client_id}/", {"email": "a@example.com"}, format="json"
    )
    assert own.status_code == 200


def test_partner_may_still_link_and_unlink_its_own_brand_on_a_shared_account(
    side_a, side_b, shared
):
    response = side_a.api.patch(
        f"/api/v1/accounts/{shared.account.pk}/", {"brands": [side_a.brand.code]}, format="json"
    )
    assert response.status_code == 200
    assert set(shared.account.brands.values_list("pk", flat=True)) == {
        side_a.brand.pk,
        side_b.brand.pk,
    }


# --------------------------------------------------------------------------- blocks


@pytest.mark.parametrize("how", ["admin action", "staff API", "before callers were recorded"])
def test_partner_never_lifts_a_block_the_operator_set(side_a, operator, staff_api, unchanged, how):
    account = side_a.account
    if how == "admin action":
        account_block(account=account, reason="court order", blocked_by=operator)
    elif how == "staff API":
        response = post(staff_api, f"/api/v1/accounts/{account.pk}/block/", {"reason": "court"})
        assert response.status_code == 200
    else:
        account_block(account=account, reason="old block", blocked_by=operator)
        Account.objects.filter(pk=account.pk).update(status_changed_by_caller="")
    with unchanged():
        response = post(side_a.api, f"/api/v1/accounts/{account.pk}/unblock/", {"reason": "pls"})
        assert error_of(response) == (403, "blocked_by_staff"), response.json()
    assert Account.objects.get(pk=account.pk).status == "blocked"
    # The operator lifts it.
    lifted = post(staff_api, f"/api/v1/accounts/{account.pk}/unblock/")
    assert lifted.status_code == 200 and lifted.json()["status"] == "open"


def test_partner_lifts_its_own_block_and_the_block_records_who_set_it(side_a):
    url = f"/api/v1/accounts/{side_a.account.pk}"
    assert post(side_a.api, f"{url}/block/", {"reason": "chargeback"}).status_code == 200
    account = Account.objects.get(pk=side_a.account.pk)
    assert account.status_changed_by_caller == f"partner:{side_a.partner.pk}"
    assert post(side_a.api, f"{url}/unblock/").status_code == 200


# --------------------------------------------------------------------------- sub-accounts


@pytest.fixture
def b_payer(side_b):
    """B's corporate payer with a sub-account that only A's brand uses."""
    payer = AccountFactory(brands=[side_b.brand])
    return payer


def test_partner_cannot_detach_a_sub_account_from_a_payer_outside_its_scope(
    side_a, b_payer, unchanged
):
    employee = AccountFactory(brands=[side_a.brand])
    account_set_parent(account=employee, parent=b_payer)
    own_payer = AccountFactory(brands=[side_a.brand])
    assert side_a.api.get(f"/api/v1/accounts/{employee.pk}/").json()["parent"] == b_payer.pk
    with unchanged():
        for parent in (None, own_payer.pk):
            response = side_a.api.patch(
                f"/api/v1/accounts/{employee.pk}/", {"parent": parent}, format="json"
            )
            assert error_of(response) == (403, "shared_object"), parent


def test_partner_cannot_attach_under_a_payer_outside_its_scope_or_shared(
    side_a, b_payer, shared, unchanged
):
    fresh = AccountFactory(brands=[side_a.brand])
    with unchanged():
        outside = side_a.api.patch(
            f"/api/v1/accounts/{fresh.pk}/", {"parent": b_payer.pk}, format="json"
        )
        assert error_of(outside) == (404, "not_found")
        under_shared = side_a.api.patch(
            f"/api/v1/accounts/{fresh.pk}/", {"parent": shared.account.pk}, format="json"
        )
        assert error_of(under_shared) == (403, "shared_object")
        client = side_a.account.client_id
        for parent, expected in (
            (b_payer.pk, (404, "not_found")),
            (shared.account.pk, (403, "shared_object")),
        ):
            response = post(side_a.api, "/api/v1/accounts/", {"client": client, "parent": parent})
            assert error_of(response) == expected


def test_partner_moves_sub_accounts_between_its_own_payers(side_a):
    payer = AccountFactory(brands=[side_a.brand])
    employee = AccountFactory(brands=[side_a.brand])
    attached = side_a.api.patch(
        f"/api/v1/accounts/{employee.pk}/", {"parent": payer.pk}, format="json"
    )
    assert attached.status_code == 200 and attached.json()["parent"] == payer.pk
    detached = side_a.api.patch(f"/api/v1/accounts/{employee.pk}/", {"parent": None}, format="json")
    assert detached.status_code == 200 and detached.json()["parent"] is None
    assert Account.objects.get(pk=employee.pk).balance == Decimal("0.00")
