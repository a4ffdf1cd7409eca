"""A brand's new bank details wait for a second person: until the request is approved the
invoices' payment QR keeps the current details; invoices issued after carry the new ones."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from approvals.models import ApprovalRequest
from approvals.services import approval_approve
from brands.maker_checker import bank_details_request
from core.caller import Caller
from invoicing import documents
from invoicing.models import Invoice
from tests.factories import UserFactory
from tests.invoicing.pdf_helpers import qr_codes

OLD_ACCOUNT = "40702810900000000001"
NEW_ACCOUNT = "40702810900000000777"
NEW_BIK = "044525974"


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def _staff(*codenames: str):
    user = UserFactory(is_staff=True)
    user.save()
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return type(user).objects.get(pk=user.pk)


def test_invoice_qr_keeps_the_old_bank_details_until_the_change_is_approved(
    brand, account, make_service, subscribe, bill
):
    assert brand.bank_account == OLD_ACCOUNT
    subscribe(account, make_service(), "flat", price="1000.00")
    assert bill("2026-01").invoices_issued == 1
    maker, checker = _staff("change_brand"), _staff("approve_request")
    filed = bank_details_request(
        brand=brand,
        changes={"bank_account": NEW_ACCOUNT, "bank_bik": NEW_BIK},
        caller=Caller.for_user(maker),
    )
    january = Invoice.objects.get(period__code="2026-01")
    [qr] = qr_codes(documents.invoice_pdf(invoice=january))
    assert f"|PersonalAcc={OLD_ACCOUNT}|" in qr and f"|BIC={brand.bank_bik}|" in qr

    approval_approve(request=filed, checker=Caller.for_user(checker))
    assert ApprovalRequest.objects.get(pk=filed.pk).status == "approved"
    assert bill("2026-02").invoices_issued == 1
    february = Invoice.objects.get(period__code="2026-02")
    [qr] = qr_codes(documents.invoice_pdf(invoice=february))
    assert f"|PersonalAcc={NEW_ACCOUNT}|" in qr and f"|BIC={NEW_BIK}|" in qr
    # The January invoice was issued (and stored) with the details of its day.
    [stored] = qr_codes(documents.invoice_pdf(invoice=january))
    assert f"|PersonalAcc={OLD_ACCOUNT}|" in stored
