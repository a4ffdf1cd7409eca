"""A bulk posting's payments are allocated set-based (``payments_allocate``, on the ledger's
``transactions_posted``) with exactly the result of allocating them one by one."""

from decimal import Decimal

from accounts.services import account_create
from invoicing.models import Invoice, InvoiceAllocation
from invoicing.receivers import allocate_on_posting
from ledger.services import DebitItem, PaymentItem, payment_post, post_bulk
from ledger.signals import transaction_posted
from tests.factories import ClientFactory, LegalEntityFactory
from tests.invoicing.test_payer_allocation import subscribe_all

# (which account of the tree, amount): to sub-accounts (their subtree first), to the payer,
# more than is owed (the rest stays an advance), and to a tree paid up meanwhile.
SCRIPT = [
    ("sub0", "30.00"),
    ("payer", "120.00"),
    ("sub1", "15.00"),
    ("sub0", "500.00"),
    ("sub1", "5.00"),
]


def tree(brand):
    payer = account_create(client=LegalEntityFactory(), brands=[brand])
    subs = [account_create(client=ClientFactory(), brands=[brand], parent=payer) for _ in range(2)]
    return {"payer": payer, "sub0": subs[0], "sub1": subs[1]}


def picture(accounts):
    """Each invoice of the tree (by account name) with what it was paid, in what steps."""
    names = {acc.pk: name for name, acc in accounts.items()}
    invoices = Invoice.objects.filter(account__in=list(accounts.values())).order_by("pk")
    return [
        (
            names[inv.account_id],
            inv.paid_amount,
            inv.status,
            [
                (a.source, a.amount)
                for a in InvoiceAllocation.objects.filter(invoice=inv).order_by("pk")
            ],
        )
        for inv in invoices
    ]


def test_bulk_payments_allocate_as_one_by_one(brand, service, subscribe, bill):
    single, bulk, untouched = tree(brand), tree(brand), tree(brand)
    subscribe_all([acc for t in (single, bulk) for acc in t.values()], service, "100.00", subscribe)
    bill("2026-01")
    for name, amount in SCRIPT:
        payment_post(account=single[name], amount=Decimal(amount), channel="bank")
    # Without the per-posting receiver: what is allocated, the set-based path allocated.
    transaction_posted.disconnect(dispatch_uid="invoicing.allocate_payments")
    try:
        results = post_bulk(
            [
                PaymentItem(account_id=bulk[name].pk, amount=Decimal(amount), channel="bank")
                for name, amount in SCRIPT
            ]
            # A payment to a tree with no invoice allocates nothing.
            + [PaymentItem(account_id=untouched["sub0"].pk, amount=Decimal("9.00"), channel="bank")]
        )
    finally:
        transaction_posted.connect(allocate_on_posting, dispatch_uid="invoicing.allocate_payments")
    assert all(r.kind == "payment" for r in results)
    got = picture(bulk)
    assert got == picture(single)
    assert {status for _, _, status, _ in got} == {"paid"}  # the script pays everything
    assert sum(len(steps) for *_, steps in got) >= 4
    assert not InvoiceAllocation.objects.filter(transaction_id=results[-1].pk).exists()


def test_a_bulk_posting_with_other_kinds_allocates_one_by_one(brand, service, subscribe, bill):
    single, bulk = tree(brand), tree(brand)
    subscribe_all([acc for t in (single, bulk) for acc in t.values()], service, "100.00", subscribe)
    bill("2026-01")
    for accounts, bulk_call in ((single, False), (bulk, True)):
        items = [
            PaymentItem(account_id=accounts["sub1"].pk, amount=Decimal("150.00"), channel="bank"),
            DebitItem(account_id=accounts["payer"].pk, amount=Decimal("20.00"), brand_id=brand.pk),
            PaymentItem(account_id=accounts["payer"].pk, amount=Decimal("60.00"), channel="bank"),
        ]
        if bulk_call:
            post_bulk(items)
        else:
            for item in items:
                post_bulk([item])
    assert picture(bulk) == picture(single)
    assert any(steps for *_, steps in picture(bulk))
