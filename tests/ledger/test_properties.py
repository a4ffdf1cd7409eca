"""Property-based tests: random sequences of ledger operations keep every invariant.

A hypothesis state machine drives the real services against PostgreSQL over a
handful of accounts (payers with credit terms, sub-accounts with write-off
limits) while the clock moves forward by hand. Alongside it runs a plain
Python model of what the ledger should be. Before each operation the model
predicts the outcome (success, or the exact refusal code); after each step
``verify_ledger()`` must report nothing and every account's balance, held
amount, status, ``negative_since`` and write-off counters must equal the model.

The model counts write-offs independently of the service's incremental
counters: an account's spend for a day (or month) is the sum of the live
discretionary write-offs of its chain booked on that day: debits and
transfers out by their date, holds by the day they were reserved (the
reserved amount while active, the captured amount once captured), less
whatever was voided, expired or reversed.

Accounts are also moved between payers (``account_set_parent``), but never
while write-offs counted in the current month went through them: releasing
or reversing such a write-off after the move gives the room back to the new
chain (whose counters never held it) and leaves it on the old one. That is a
known gap of the counters (they do not record the chain they were counted
on), left to a product decision rather than modelled here.

Each example runs inside a savepoint that is rolled back at the end, so every
example starts from an empty ledger.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.conf import settings
from django.db import transaction
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from accounts.models import Account
from accounts.services import (
    account_block,
    account_create,
    account_set_parent,
    account_unblock,
    account_update,
)
from ledger.exceptions import DomainError
from ledger.models import Hold, Transaction
from ledger.services import (
    accrual_post,
    clear_system_account_cache,
    debit_post,
    hold_capture,
    hold_create,
    hold_void,
    holds_expire_due,
    payment_post,
    refund_post,
    transaction_reverse,
    transfer_post,
)
from ledger.verify import verify_ledger
from tests.factories import AccountFactory, BrandFactory, ClientFactory
from tests.ledger.ledger_model import (
    AMOUNTS,
    KEYS,
    LIMITS,
    MAX_ACCOUNTS,
    OK,
    ZERO,
    D,
    FrozenClock,
    MAccount,
    MHold,
    Model,
    MTransaction,
    cents,
)


class LedgerMachine(RuleBasedStateMachine):
    accounts = Bundle("accounts")
    holds = Bundle("holds")
    transactions = Bundle("transactions")

    def __init__(self) -> None:
        super().__init__()
        clear_system_account_cache()  # ids cached by an earlier, rolled-back example are gone
        self.clock = FrozenClock()
        self.model = Model(self.clock)
        self._clock_patch = mock.patch("django.utils.timezone.now", new=self.clock)
        self._clock_patch.start()
        self._example = transaction.atomic()
        self._example.__enter__()

    def teardown(self) -> None:
        try:
            transaction.set_rollback(True)
            self._example.__exit__(None, None, None)
        finally:
            self._clock_patch.stop()
            clear_system_account_cache()

    # ---- helpers

    def attempt(self, expected: str | None, call: Callable[[], Any]) -> Any:
        """Run the service; its outcome must be the one the model predicted."""
        try:
            result = call()
        except DomainError as exc:
            assert exc.code == expected, (
                f"predicted {expected or 'success'}, got {exc.code}: {exc.message} {exc.details}"
            )
            return None
        assert expected is OK, f"predicted {expected}, but it succeeded"
        return result

    def run_keyed(
        self, key: str | None, request: tuple[Any, ...], predicted: str | None, call
    ) -> Any:
        """Idempotency first (replay or conflict), then the prediction for a fresh run."""
        verdict, original_id = self.model.key_outcome(key, request)
        if verdict == "replay":
            result = self.attempt(OK, call)
            assert result.replayed is True and result.pk == original_id
            return None
        if verdict == "idempotency_conflict":
            self.attempt("idempotency_conflict", call)
            return None
        result = self.attempt(predicted, call)
        if result is not None:
            assert result.replayed is False
            if key is not None:
                self.model.keys[key] = (request, result.pk)
        return result

    def new_account(self, account: Account) -> int:
        self.model.accounts[account.pk] = MAccount(
            id=account.pk,
            parent=account.parent_id,
            credit_limit=account.credit_limit,
            credit_period_days=account.credit_period_days,
            credit_expires_at=account.credit_expires_at,
            limit_transaction=account.write_off_limit_transaction,
            limit_day=account.write_off_limit_day,
            limit_month=account.write_off_limit_month,
        )
        return account.pk

    # ---- set-up

    @initialize(
        target=accounts,
        credit=st.sampled_from([ZERO, D("100.00")]),
        payer_limit=LIMITS,
        sub_limit=LIMITS,
        funds=st.tuples(cents(0, 100_000), cents(0, 100_000)),
    )
    def open_accounts(self, credit, payer_limit, sub_limit, funds):
        self.brand = BrandFactory()
        first = AccountFactory(
            brands=[self.brand], credit_limit=credit, write_off_limit_month=payer_limit
        )
        second = AccountFactory(brands=[self.brand])
        sub = account_create(
            client=ClientFactory(),
            parent=first,
            brands=[self.brand],
            write_off_limit_day=sub_limit,
        )
        ids = [self.new_account(acc) for acc in (first, second, sub)]
        for account_id, amount in zip(ids, funds, strict=False):
            if amount:
                txn = payment_post(account=account_id, amount=amount, channel="bank")
                self.model.post(MTransaction(txn.pk, "payment", [(account_id, amount)]))
        return multiple(*ids)

    # ---- structure and limits

    @precondition(lambda self: len(self.model.accounts) < MAX_ACCOUNTS)
    @rule(target=accounts, parent=accounts, limit_transaction=LIMITS, limit_month=LIMITS)
    def create_sub_account(self, parent, limit_transaction, limit_month):
        too_deep = len(self.model.chain(parent)) + 1 > settings.BILLING_MAX_ACCOUNT_DEPTH
        sub = self.attempt(
            "invalid_account_structure" if too_deep else OK,
            lambda: account_create(
                client=ClientFactory(),
                parent=Account.objects.get(pk=parent),
                brands=[self.brand],
                write_off_limit_transaction=limit_transaction,
                write_off_limit_month=limit_month,
            ),
        )
        return multiple() if sub is None else self.new_account(sub)

    @rule(account=accounts, transaction_=LIMITS, day=LIMITS, month=LIMITS)
    def change_write_off_limits(self, account, transaction_, day, month):
        self.attempt(
            OK,
            lambda: account_update(
                account=Account.objects.get(pk=account),
                write_off_limit_transaction=transaction_,
                write_off_limit_day=day,
                write_off_limit_month=month,
            ),
        )
        acc = self.model.accounts[account]
        acc.limit_transaction, acc.limit_day, acc.limit_month = transaction_, day, month

    @rule(
        account=accounts,
        credit_limit=st.sampled_from([ZERO, D("50.00"), D("200.00")]),
        period_days=st.sampled_from([None, 0, 3]),
        expires_in_days=st.sampled_from([None, -1, 0, 30]),
    )
    def change_credit_terms(self, account, credit_limit, period_days, expires_in_days):
        acc = self.model.accounts[account]
        expires = None if expires_in_days is None else self.clock.today + timedelta(expires_in_days)
        has_terms = credit_limit or period_days is not None or expires is not None
        ok = self.attempt(
            "invalid_account_structure" if acc.parent is not None and has_terms else OK,
            lambda: account_update(
                account=Account.objects.get(pk=account),
                credit_limit=credit_limit,
                credit_period_days=period_days,
                credit_expires_at=expires,
            ),
        )
        if ok is not None:
            acc.credit_limit, acc.credit_period_days, acc.credit_expires_at = (
                credit_limit,
                period_days,
                expires,
            )

    @rule(account=accounts, blocked=st.booleans())
    def set_blocked(self, account, blocked):
        acc = self.model.accounts[account]
        wanted = Account.Status.BLOCKED if blocked else Account.Status.OPEN
        self.attempt(
            "invalid_status_transition" if acc.status == wanted else OK,
            lambda: (
                account_block(account=Account.objects.get(pk=account), reason="property")
                if blocked
                else account_unblock(account=Account.objects.get(pk=account))
            ),
        )
        acc.status = wanted

    @rule(account=accounts, parent=accounts, detach=st.booleans())
    def move_account(self, account, parent, detach):
        """Attach an account under another payer, or detach it to pay for itself."""
        if self.model.counted_this_month(account):
            # Moving a chain with write-offs counted this month leaves the old
            # ancestors' counters behind (see the module docstring): not modelled.
            return
        new_parent = None if detach else parent
        moved = self.attempt(
            self.model.move_refusal(account, new_parent),
            lambda: account_set_parent(
                account=Account.objects.get(pk=account),
                parent=None if new_parent is None else Account.objects.get(pk=new_parent),
            ),
        )
        if moved is not None:
            self.model.accounts[account].parent = new_parent

    @rule(hours=st.sampled_from([1, 5, 23, 24 * 3, 24 * 8]), sweep=st.booleans())
    def advance_clock(self, hours, sweep):
        """Time passes; the scheduled job may then expire the holds that are due."""
        self.clock.now += timedelta(hours=hours)
        if not sweep:
            return
        due = [
            h
            for h in self.model.holds.values()
            if h.status == Hold.Status.ACTIVE and h.expires_at <= self.clock.now
        ]
        assert holds_expire_due() == len(due)
        for hold in due:
            self.model.accounts[hold.payer].held -= hold.amount
            hold.status = Hold.Status.EXPIRED

    # ---- money

    @rule(target=transactions, account=accounts, amount=cents(1, 50_000), key=KEYS)
    def pay(self, account, amount, key):
        txn = self.run_keyed(
            key,
            ("payment", account, amount),
            OK,
            lambda: payment_post(
                account=account, amount=amount, channel="bank", idempotency_key=key
            ),
        )
        if txn is None:
            return multiple()
        payer = self.model.payer(account).id
        self.model.post(MTransaction(txn.pk, "payment", [(payer, amount)]))
        return txn.pk

    @rule(target=transactions, account=accounts, amount=AMOUNTS, key=KEYS)
    def debit(self, account, amount, key):
        txn = self.run_keyed(
            key,
            ("debit", account, amount),
            self.model.write_off_refusal(account, amount),
            lambda: debit_post(
                account=account, amount=amount, brand=self.brand.pk, idempotency_key=key
            ),
        )
        if txn is None:
            return multiple()
        chain = self.model.chain(account)
        self.model.post(
            MTransaction(
                txn.pk,
                "debit",
                [(chain[-1], -amount)],
                write_off_chain=chain,
                amount=amount,
                booked_on=self.clock.today,
            )
        )
        return txn.pk

    @rule(target=transactions, account=accounts, amount=AMOUNTS)
    def accrue(self, account, amount):
        txn = self.attempt(
            OK, lambda: accrual_post(account=account, amount=amount, brand=self.brand.pk)
        )
        self.model.post(MTransaction(txn.pk, "accrual", [(self.model.payer(account).id, -amount)]))
        return txn.pk

    @rule(target=transactions, source=accounts, target_account=accounts, amount=AMOUNTS)
    def transfer(self, source, target_account, amount):
        source_chain = self.model.chain(source)
        target_payer = self.model.payer(target_account).id
        if source_chain[-1] == target_payer:
            predicted = "invalid_operation"
        else:
            predicted = self.model.write_off_refusal(source, amount)
        txn = self.attempt(
            predicted,
            lambda: transfer_post(from_account=source, to_account=target_account, amount=amount),
        )
        if txn is None:
            return multiple()
        self.model.post(
            MTransaction(
                txn.pk,
                "transfer",
                [(source_chain[-1], -amount), (target_payer, amount)],
                write_off_chain=source_chain,
                amount=amount,
                booked_on=self.clock.today,
            )
        )
        return txn.pk

    @rule(target=transactions, account=accounts, amount=AMOUNTS)
    def refund(self, account, amount):
        acc = self.model.accounts[account]
        if acc.parent is not None:
            predicted = "invalid_operation"
        elif amount > acc.balance - acc.held:
            predicted = "insufficient_funds"
        else:
            predicted = OK
        txn = self.attempt(
            predicted, lambda: refund_post(account=account, amount=amount, channel="bank")
        )
        if txn is None:
            return multiple()
        self.model.post(MTransaction(txn.pk, "refund", [(account, -amount)]))
        return txn.pk

    @precondition(lambda self: self.model.keys)
    @rule(data=st.data())
    def retry_keyed_request(self, data):
        """A client retries a request it already sent: the original comes back, whatever
        happened since (the account blocked, the funds spent, the limits lowered)."""
        key = data.draw(st.sampled_from(sorted(self.model.keys)), label="key")
        (operation, account, amount), original_id = self.model.keys[key]
        calls = {
            "payment": lambda: payment_post(
                account=account, amount=amount, channel="bank", idempotency_key=key
            ),
            "debit": lambda: debit_post(
                account=account, amount=amount, brand=self.brand.pk, idempotency_key=key
            ),
            "hold_create": lambda: hold_create(
                account=account, amount=amount, brand=self.brand.pk, idempotency_key=key
            ),
        }
        result = self.attempt(OK, calls[operation])
        assert result.replayed is True and result.pk == original_id

    # ---- holds

    @rule(target=holds, account=accounts, amount=AMOUNTS, key=KEYS)
    def reserve(self, account, amount, key):
        hold = self.run_keyed(
            key,
            ("hold_create", account, amount),
            self.model.write_off_refusal(account, amount),
            lambda: hold_create(
                account=account, amount=amount, brand=self.brand.pk, idempotency_key=key
            ),
        )
        if hold is None:
            return multiple()
        chain = self.model.chain(account)
        self.model.accounts[chain[-1]].held += amount
        self.model.holds[hold.pk] = MHold(
            hold.pk,
            chain,
            amount,
            reserved_on=self.clock.today,
            expires_at=self.clock.now + timedelta(minutes=settings.BILLING_HOLD_TTL_MINUTES),
        )
        return hold.pk

    @rule(
        target=transactions,
        hold_id=holds,
        share=st.none() | st.sampled_from([D("0.25"), D("0.5"), D("1"), D("1.5")]),
    )
    def capture(self, hold_id, share):
        hold = self.model.holds[hold_id]
        amount = (
            None if share is None else max((hold.amount * share).quantize(D("0.01")), D("0.01"))
        )
        if hold.status != Hold.Status.ACTIVE or hold.expires_at <= self.clock.now:
            predicted = "hold_not_active"
        elif amount is not None and amount > hold.amount:
            predicted = "invalid_amount"
        else:
            predicted = OK
        txn = self.attempt(predicted, lambda: hold_capture(hold=hold_id, amount=amount))
        if txn is None:
            return multiple()
        captured = hold.amount if amount is None else amount
        assert txn.amount == captured
        self.model.accounts[hold.payer].held -= hold.amount
        hold.status, hold.captured = Hold.Status.CAPTURED, captured
        self.model.post(
            MTransaction(txn.pk, "hold_capture", [(hold.payer, -captured)], hold=hold_id)
        )
        return txn.pk

    @rule(hold_id=holds)
    def void(self, hold_id):
        hold = self.model.holds[hold_id]
        active = hold.status == Hold.Status.ACTIVE
        self.attempt(OK if active else "hold_not_active", lambda: hold_void(hold=hold_id))
        if active:
            self.model.accounts[hold.payer].held -= hold.amount
            hold.status = Hold.Status.VOIDED

    # ---- reversals

    @rule(target=transactions, original=transactions)
    def reverse(self, original):
        txn = self.model.transactions[original]
        if txn.kind == "reversal":
            predicted = "invalid_operation"
        elif txn.reversed:
            predicted = "already_reversed"
        elif any(self.model.accounts[payer].parent is not None for payer, _ in txn.legs):
            predicted = "invalid_operation"  # it paid for itself then, it is a sub-account now
        else:
            predicted = OK
        reversal = self.attempt(
            predicted, lambda: transaction_reverse(transaction_obj=original, reason="property")
        )
        if reversal is None:
            return multiple()
        txn.reversed = True
        if txn.hold is not None:
            self.model.holds[txn.hold].capture_reversed = True
        self.model.post(
            MTransaction(reversal.pk, "reversal", [(payer, -amount) for payer, amount in txn.legs])
        )
        return reversal.pk

    # ---- invariants

    @invariant()
    def ledger_verifies(self):
        failures = verify_ledger()
        assert failures == [], "\n".join(map(str, failures))

    @invariant()
    def accounts_match_the_model(self):
        today = self.clock.today
        rows = {
            acc.pk: acc for acc in Account.objects.filter(kind=Account.Kind.CLIENT).order_by("pk")
        }
        assert set(rows) == set(self.model.accounts)
        for account_id, expected in self.model.accounts.items():
            row = rows[account_id]
            day = row.spent_day if row.spent_day_on == today else ZERO
            month = row.spent_month if row.spent_month_on == today.replace(day=1) else ZERO
            actual = (row.balance, row.held, row.status, row.negative_since, day, month)
            wanted = (
                expected.balance,
                expected.held,
                expected.status,
                expected.negative_since,
                *self.model.spent(account_id),
            )
            assert actual == wanted, f"account {account_id}: db {actual} != model {wanted}"

    @invariant()
    def holds_and_transactions_match_the_model(self):
        assert dict(Hold.objects.values_list("pk", "status")) == {
            h.id: h.status for h in self.model.holds.values()
        }
        assert set(Transaction.objects.values_list("pk", flat=True)) == set(self.model.transactions)


@pytest.mark.django_db(transaction=True)
def test_random_operation_sequences_keep_the_ledger_consistent():
    run_state_machine_as_test(
        LedgerMachine,
        settings=hypothesis_settings(
            max_examples=30,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )


@pytest.mark.django_db(transaction=True)
def test_reversing_a_capture_gives_limit_room_back_to_the_day_the_hold_reserved():
    """A sequence the model caught: a hold reserved before midnight and captured after it
    counts on the reservation day, yet reversing the capture took the room off the capture
    day, so that day's limit let more through than it allows."""
    state = LedgerMachine()
    try:
        payer, _, _ = state.open_accounts(
            credit=ZERO, payer_limit=None, sub_limit=None, funds=(D("1000.00"), ZERO)
        ).values
        state.change_write_off_limits(account=payer, transaction_=None, day=D("40.00"), month=None)
        hold = state.reserve(account=payer, amount=D("35.00"), key=None)
        state.advance_clock(hours=5, sweep=False)  # 31 January 21:00 -> 1 February 02:00
        capture = state.capture(hold_id=hold, share=None)
        state.debit(account=payer, amount=D("30.00"), key=None)
        state.reverse(original=capture)
        state.accounts_match_the_model()
        assert Account.objects.get(pk=payer).spent_day == D("30.00")
        state.debit(account=payer, amount=D("20.00"), key=None)  # 30 + 20 > 40: refused
        state.accounts_match_the_model()
        state.ledger_verifies()
    finally:
        state.teardown()


@pytest.mark.django_db(transaction=True)
def test_reversing_a_posting_of_an_account_that_became_a_sub_account_is_refused():
    """A sequence the model caught: an account paid, spent its money, then became a
    sub-account; reversing its old payment put a balance on a sub-account, which the
    database refused with a raw integrity error instead of a domain error."""
    state = LedgerMachine()
    try:
        company, employee, _ = state.open_accounts(
            credit=ZERO, payer_limit=None, sub_limit=None, funds=(D("500.00"), ZERO)
        ).values
        payment = state.pay(account=employee, amount=D("100.00"), key=None)
        state.refund(account=employee, amount=D("100.00"))
        state.move_account(account=employee, parent=company, detach=False)
        state.reverse(original=payment)  # predicted: invalid_operation, nothing changes
        state.accounts_match_the_model()
        state.ledger_verifies()
    finally:
        state.teardown()
