"""Receivers of ledger signals (connected in ``PaymentsConfig.ready``)."""

from __future__ import annotations

from typing import Any

from accounts.models import Account
from ledger.models import TransactionKind

OVERPAYMENT_MEMO = "Overpayment refunded (payment #{})"


def refund_overpayment(sender: Any, transaction: Any, **kwargs: Any) -> None:
    """A payment whose payer's rule says ``overpayment=refund``: refund the part of it that
    leaves the payer's own funds above zero, in the payment's transaction (its payer is
    locked). Runs after invoicing's receiver, so the payment has paid invoices first."""
    if (
        transaction.kind != TransactionKind.PAYMENT
        or transaction.channel == Account.Channel.GATEWAY
    ):
        return  # an online payment's overpayment goes back to the card (a refund saga)
    from payments.rules import overpayment_policy

    if overpayment_policy(transaction.account_id) != "refund":
        return
    payer_legs = [e for e in transaction.entries.all() if e.balance_after is not None]
    if not payer_legs:
        return
    payer_id = payer_legs[0].account_id
    balance, held = Account.objects.filter(pk=payer_id).values_list("balance", "held").get()
    overpaid = min(transaction.amount, balance - held)
    if overpaid <= 0:
        return
    from ledger.services import refund_post

    refund_post(
        account=payer_id,
        amount=overpaid,
        channel=transaction.channel or Account.Channel.OTHER,
        memo=OVERPAYMENT_MEMO.format(transaction.pk),
        currency=transaction.currency,
        metadata={"overpayment_of": transaction.pk},
    )
