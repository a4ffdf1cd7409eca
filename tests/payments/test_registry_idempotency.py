"""``POST /api/v1/registries/`` with an ``Idempotency-Key``, over HTTP: the same request
again replays the first response and posts nothing; another request with the key is
refused (``idempotency_conflict``) and posts nothing."""

from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from access.models import ApiIdempotencyRecord
from ledger.models import Transaction
from payments.models import AgentPayment, Registry
from payments.services import payment_agent_create
from tests.factories import AccountFactory, UserFactory
from tests.ledger.concurrency import run_in_threads
from tests.payments.conftest import Pay, sber_txt


def upload(api, data, key=None, dry_run=False, name="registry.txt", agent="SBER"):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return api.post(
        "/api/v1/registries/",
        {
            "agent": agent,
            "file": SimpleUploadedFile(name, data),
            "dry_run": "true" if dry_run else "false",
        },
        format="multipart",
        **headers,
    )


def balance(account) -> Decimal:
    account.refresh_from_db()
    return account.balance


def payments() -> int:
    return Transaction.objects.filter(kind="payment").count()


def test_the_same_key_and_file_twice_posts_once_and_replays_the_response(staff_api, sber, accounts):
    a, b, _ = accounts
    data = sber_txt([Pay("1", a.number, "100.00"), Pay("2", b.number, "50.00")])
    first = upload(staff_api, data, key="reg-1")
    assert first.status_code == 201, first.json()
    assert first.json()["posted"] == 2 and "Idempotent-Replayed" not in first
    again = upload(staff_api, data, key="reg-1")
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content  # the stored response, byte for byte
    assert Registry.objects.count() == 1 and payments() == 2
    assert AgentPayment.objects.count() == 2
    assert (balance(a), balance(b)) == (Decimal("100.00"), Decimal("50.00"))
    # Without the key the same file is a new registry whose lines are all duplicates.
    plain = upload(staff_api, data).json()
    assert (plain["posted"], plain["duplicates"]) == (0, 2) and Registry.objects.count() == 2


def test_another_file_with_the_same_key_is_refused_and_posts_nothing(staff_api, sber, accounts):
    a, _, c = accounts
    first = upload(staff_api, sber_txt([Pay("1", a.number, "100.00")]), key="reg-2")
    assert first.status_code == 201
    other = sber_txt([Pay("9", c.number, "70.00")])
    refused = upload(staff_api, other, key="reg-2")
    assert refused.status_code == 409
    assert refused.json()["code"] == "idempotency_conflict"
    assert balance(c) == 0 and payments() == 1 and Registry.objects.count() == 1
    assert not AgentPayment.objects.filter(payment_id="9").exists()
    # The same file under another name, or as a dry run, is another request too.
    renamed = upload(staff_api, sber_txt([Pay("1", a.number, "100.00")]), key="reg-2", name="b")
    dry = upload(staff_api, sber_txt([Pay("1", a.number, "100.00")]), key="reg-2", dry_run=True)
    assert [r.json()["code"] for r in (renamed, dry)] == ["idempotency_conflict"] * 2
    assert Registry.objects.count() == 1 and balance(a) == Decimal("100.00")
    # Another staff user's key of the same name is theirs alone.
    other_user = UserFactory(is_staff=True, is_superuser=True)
    other_user.save()
    other_staff = APIClient()
    other_staff.force_login(other_user)
    theirs = upload(other_staff, other, key="reg-2")
    assert theirs.status_code == 201 and "Idempotent-Replayed" not in theirs
    assert balance(c) == Decimal("70.00")


def test_a_refused_file_keeps_no_key_and_a_dry_run_replays_as_a_preview(staff_api, sber, accounts):
    a = accounts[0]
    bad = sber_txt([Pay("1", a.number, "10.00")], total="11.00")
    refused = upload(staff_api, bad, key="reg-3")
    assert (refused.status_code, refused.json()["code"]) == (422, "registry_refused")
    assert not ApiIdempotencyRecord.objects.exists() and Registry.objects.count() == 0
    good = sber_txt([Pay("1", a.number, "10.00")])
    preview = upload(staff_api, good, key="reg-3", dry_run=True)
    assert preview.status_code == 201 and preview.json()["status"] == "previewed"
    replay = upload(staff_api, good, key="reg-3", dry_run=True)
    assert replay["Idempotent-Replayed"] == "true" and replay.content == preview.content
    assert Registry.objects.count() == 1 and balance(a) == 0


def test_a_key_used_for_another_money_post_is_a_conflict(staff_api, sber, accounts, brand):
    a = accounts[0]
    first = upload(staff_api, sber_txt([Pay("1", a.number, "10.00")]), key="shared")
    assert first.status_code == 201
    assert balance(a) == Decimal("10.00")
    debit = staff_api.post(
        "/api/v1/debits/",
        {"account": a.pk, "amount": "1.00", "brand": brand.pk},
        format="json",
        HTTP_IDEMPOTENCY_KEY="shared",
    )
    assert debit.status_code == 409 and debit.json()["code"] == "idempotency_conflict"
    assert balance(a) == Decimal("10.00")


@pytest.mark.django_db(transaction=True)
def test_concurrent_uploads_with_one_key_post_once():
    payment_agent_create(code="SBER", name="Sberbank", format="sber-txt")
    user = UserFactory(is_staff=True, is_superuser=True)
    user.save()
    accounts = [AccountFactory() for _ in range(10)]
    data = sber_txt([Pay(str(i), acc.number, "10.00") for i, acc in enumerate(accounts)])

    def call():
        client = APIClient()
        client.force_login(user)
        return upload(client, data, key="race-1")

    outcomes = run_in_threads([call] * 3)
    assert [o.code for o in outcomes] == [None] * 3
    responses = [o.value for o in outcomes]
    assert [r.status_code for r in responses] == [201] * 3
    assert len({r.content for r in responses}) == 1
    assert sum(r.get("Idempotent-Replayed") == "true" for r in responses) == 2
    assert Registry.objects.count() == 1 and payments() == 10
    assert all(balance(acc) == Decimal("10.00") for acc in accounts)


def apply(api, registry_id, key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return api.post(f"/api/v1/registries/{registry_id}/apply/", **headers)


def test_apply_with_the_same_key_twice_replays_the_response_and_posts_nothing_new(
    staff_api, sber, accounts
):
    a, b, _ = accounts
    data = sber_txt([Pay("1", a.number, "100.00"), Pay("2", b.number, "50.00")])
    preview = upload(staff_api, data, dry_run=True).json()
    assert preview["status"] == "previewed" and payments() == 0
    first = apply(staff_api, preview["id"], key="apply-1")
    assert first.status_code == 200, first.json()
    assert first.json()["status"] == "applied" and "Idempotent-Replayed" not in first
    again = apply(staff_api, preview["id"], key="apply-1")
    assert again.status_code == 200
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content  # the stored response, byte for byte
    assert payments() == 2 and AgentPayment.objects.count() == 2
    assert (balance(a), balance(b)) == (Decimal("100.00"), Decimal("50.00"))
    # Without a key (or with another one) the applied registry is 409, as before.
    plain = apply(staff_api, preview["id"])
    assert plain.status_code == 409 and plain.json()["code"] == "registry_already_applied"
    other = apply(staff_api, preview["id"], key="apply-2")
    assert other.status_code == 409 and other.json()["code"] == "registry_already_applied"
    assert payments() == 2


def test_an_apply_key_used_for_another_request_is_a_conflict_and_applies_nothing(
    staff_api, sber, accounts
):
    a, b, _ = accounts
    first = upload(staff_api, sber_txt([Pay("1", a.number, "10.00")]), key="shared")
    assert first.status_code == 201
    preview = upload(staff_api, sber_txt([Pay("2", b.number, "20.00")]), dry_run=True).json()
    refused = apply(staff_api, preview["id"], key="shared")
    assert refused.status_code == 409 and refused.json()["code"] == "idempotency_conflict"
    assert Registry.objects.get(pk=preview["id"]).status == "previewed"
    assert balance(b) == Decimal("0") and payments() == 1
    # Another key applies it.
    assert ApiIdempotencyRecord.objects.filter(key="apply-3").count() == 0
    applied = apply(staff_api, preview["id"], key="apply-3")
    assert applied.status_code == 200 and applied.json()["posted"] == 1
    assert ApiIdempotencyRecord.objects.filter(key="apply-3").count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_applies_with_one_key_apply_once_and_replay():
    payment_agent_create(code="SBER", name="Sberbank", format="sber-txt")
    user = UserFactory(is_staff=True, is_superuser=True)
    user.save()
    accounts = [AccountFactory() for _ in range(10)]
    data = sber_txt([Pay(str(i), acc.number, "10.00") for i, acc in enumerate(accounts)])
    setup = APIClient()
    setup.force_login(user)
    preview = upload(setup, data, dry_run=True).json()

    def call():
        client = APIClient()
        client.force_login(user)
        return apply(client, preview["id"], key="race-apply")

    outcomes = run_in_threads([call] * 3)
    assert [o.code for o in outcomes] == [None] * 3
    responses = [o.value for o in outcomes]
    assert [r.status_code for r in responses] == [200] * 3
    assert len({r.content for r in responses}) == 1
    assert sum(r.get("Idempotent-Replayed") == "true" for r in responses) == 2
    assert payments() == 10
    assert all(balance(acc) == Decimal("10.00") for acc in accounts)
