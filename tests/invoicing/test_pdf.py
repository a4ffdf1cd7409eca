"""Invoice PDFs: what they show (Cyrillic included), the payment QR as a banking app reads it,
storage (rendered once, race-safe), drafts, many lines, the bulk task."""

import threading
from datetime import date
from decimal import Decimal

import pytest
import yaml
from django.contrib.auth.models import Permission
from django.core.files.storage import default_storage
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from access.services import api_key_create, partner_get_or_create
from invoicing import documents, services, tasks
from invoicing.ingest import usage_ingest_records
from invoicing.models import Invoice
from invoicing.pdf import (
    DocumentLine,
    InvoiceDocument,
    Payee,
    Payer,
    payment_qr_payload,
    render_invoice_pdf,
)
from ledger.services import accrual_post
from tests.factories import (
    AccountFactory,
    BrandFactory,
    ClientFactory,
    ServiceFactory,
    UserFactory,
)
from tests.invoicing.pdf_helpers import pdf_pages_text, pdf_text, qr_codes
from tests.invoicing.reads import rows_read

BRAND_LEGAL_NAME = "ООО «Энергосбыт Север»"
CLIENT_NAME = "Иванова Мария Петровна"


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    """A storage of its own per test (invoice numbers start again in every test)."""
    settings.MEDIA_ROOT = tmp_path


@pytest.fixture
def ru_brand(db):
    return BrandFactory(
        invoice_prefix="ES",
        name="Энергосбыт",
        legal_name=BRAND_LEGAL_NAME,
        kpp="770101001",
        address="г. Москва, ул. Тверская, д. 1",
        bank_name="ПАО Сбербанк",
        bank_bik="044525225",
        bank_account="40702810900000000001",
        bank_correspondent_account="30101810400000000225",
    )


@pytest.fixture
def household(ru_brand):
    client = ClientFactory(
        name=CLIENT_NAME,
        address="г. Москва, ул. Ленина, д. 5, кв. 12",
        email="maria@example.com",
    )
    return AccountFactory(client=client, brands=[ru_brand])


@pytest.fixture
def billed(ru_brand, household, subscribe, bill):
    """January 2026 for one household: a flat fee of 1 234,56 and 150 kWh at 5,50 (VAT 20%
    included), with 100,00 of debt brought forward."""
    fee = ServiceFactory(brand=ru_brand, name="Абонентская плата", unit="мес")
    power = ServiceFactory(brand=ru_brand, name="Электроэнергия", unit="кВт·ч")
    subscribe(household, fee, "flat", price="1234.56")
    subscribe(household, power, "per_unit", price="5.50")
    result = usage_ingest_records(
        records=[
            {
                "account": household.pk,
                "service": power.pk,
                "quantity": "150",
                "occurred_at": "2026-01-15T12:00:00+03:00",
                "external_id": "jan-power",
            }
        ]
    )
    assert result.accepted == 1
    accrual_post(account=household, amount=Decimal("100.00"), brand=ru_brand, memo="old debt")
    run = bill("2026-01")
    assert run.invoices_issued == 1
    return Invoice.objects.get(account=household)


def test_invoice_pdf_shows_number_parties_lines_and_totals(billed, household, ru_brand):
    assert (billed.total, billed.vat, billed.balance_brought_forward) == (
        Decimal("2059.56"),
        Decimal("343.26"),
        Decimal("-100.00"),
    )
    content = documents.invoice_pdf(invoice=billed)
    assert content.startswith(b"%PDF-")
    text = pdf_text(content)
    issued_on = timezone.localdate(billed.issued_at).strftime("%d.%m.%Y")
    for expected in [
        f"Счёт № {billed.number} от {issued_on}",
        BRAND_LEGAL_NAME,
        f"ИНН {ru_brand.tax_id}   КПП 770101001",
        "Банк: ПАО Сбербанк",
        "БИК 044525225   к/с 30101810400000000225",
        "р/с 40702810900000000001",
        f"Плательщик: {CLIENT_NAME}",
        "Адрес: г. Москва, ул. Ленина, д. 5, кв. 12",
        f"Лицевой счёт: {household.number}",
        "Расчётный период: 01.01.2026 – 31.01.2026",
        f"Оплатить до: {billed.due_date.strftime('%d.%m.%Y')}",
        "Абонентская плата",
        "Электроэнергия",
        "кВт·ч",
        "150",
        "5,50",
        "825,00",
        "137,50",
        "1 234,56",
        "205,76",
        "1 716,30",  # subtotal
        "343,26",  # VAT
        "2 059,56",  # total
        "Задолженность на начало:",
        "100,00",
        "К оплате, RUB:",
        "2 159,56",  # amount due: the invoice plus the debt brought forward
    ]:
        assert expected in text, expected


def test_payment_qr_decodes_to_the_gost_payload(billed, household, ru_brand):
    content = documents.invoice_pdf(invoice=billed)
    issued_on = timezone.localdate(billed.issued_at).strftime("%d.%m.%Y")
    expected = (
        "ST00012"
        f"|Name={BRAND_LEGAL_NAME}"
        "|PersonalAcc=40702810900000000001"
        "|BankName=ПАО Сбербанк"
        "|BIC=044525225"
        "|CorrespAcc=30101810400000000225"
        f"|PayeeINN={ru_brand.tax_id}"
        "|KPP=770101001"
        "|Sum=215956"
        f"|Purpose=Оплата по счёту {billed.number} от {issued_on} за 2026-01,"
        f" л/с {household.number}"
        f"|PersAcc={household.number}"
        "|PaymPeriod=012026"
    )
    assert qr_codes(content) == [expected]


def _document(**changes) -> InvoiceDocument:
    fields = {
        "number": "ES-2026-000007",
        "issued_on": date(2026, 2, 1),
        "due_date": date(2026, 2, 11),
        "period_code": "2026-01",
        "period_starts_on": date(2026, 1, 1),
        "period_ends_on": date(2026, 1, 31),
        "currency": "RUB",
        "account_number": "1000001234",
        "payee": Payee(
            legal_name=BRAND_LEGAL_NAME,
            inn="7701234567",
            kpp="770101001",
            bank_name="ПАО Сбербанк",
            bik="044525225",
            settlement_account="40702810900000000001",
            correspondent_account="30101810400000000225",
        ),
        "payer": Payer(name=CLIENT_NAME),
        "subtotal": Decimal("100.00"),
        "vat": Decimal("20.00"),
        "total": Decimal("120.00"),
        "balance_brought_forward": Decimal("0.00"),
        "lines": (
            DocumentLine(
                "Вывоз ТКО",
                Decimal("1"),
                "мес",
                Decimal("120"),
                Decimal("120.00"),
                Decimal("20"),
                Decimal("20.00"),
            ),
        ),
    }
    fields.update(changes)
    return InvoiceDocument(**fields)


def test_documents_with_different_alphabets_each_show_their_own_text():
    """The fonts' subsets are cut once per distinct subset and reused: a document with
    characters beyond the common alphabet, rendered between two ordinary ones, shows
    its own text, and the ordinary ones still show theirs (no subset leaks between)."""
    plain = _document(payer=Payer(name="Петров Пётр"))
    odd = _document(payer=Payer(name="Zoë Ærøskøbing Łódź Ωmega Երևան"), number="ES-2026-000008")
    outputs = [render_invoice_pdf(document) for document in (plain, odd, plain)]
    assert "Петров Пётр" in pdf_text(outputs[0])
    assert "Zoë Ærøskøbing Łódź Ωmega Երևան" in pdf_text(outputs[1])
    assert "ES-2026-000008" in pdf_text(outputs[1])
    assert pdf_text(outputs[2]) == pdf_text(outputs[0])
    assert "Zoë" not in pdf_text(outputs[2])


def test_payment_qr_payload_is_sanitized_and_cut_to_the_standard_lengths():
    long_bank = "Публичное акционерное общество «Сбербанк России» | Московский банк"
    document = _document(
        payee=Payee(
            legal_name='ООО "Рога |  Копыта"\nСевер\t',
            inn="7701234567",
            kpp="770101001",
            bank_name=long_bank,
            bik="044525225",
            settlement_account="40702810900000000001",
            correspondent_account="30101810400000000225",
        ),
        account_number="10|00",
    )
    payload = payment_qr_payload(document)
    header, *pairs = payload.split("|")
    assert header == "ST00012"
    fields = dict(pair.split("=", 1) for pair in pairs)
    assert list(fields) == [
        "Name",
        "PersonalAcc",
        "BankName",
        "BIC",
        "CorrespAcc",
        "PayeeINN",
        "KPP",
        "Sum",
        "Purpose",
        "PersAcc",
        "PaymPeriod",
    ]
    assert fields["Name"] == 'ООО "Рога Копыта" Север'
    assert fields["BankName"] == "Публичное акционерное общество «Сбербанк Росс"
    assert len(fields["BankName"]) == 45
    assert fields["PersAcc"] == "10 00"
    assert fields["Sum"] == "12000"
    assert fields["Purpose"] == "Оплата по счёту ES-2026-000007 от 01.02.2026 за 2026-01, л/с 10 00"
    assert not any(ch in payload for ch in "\n\t\r")
    # The rendered QR carries the same sanitized payload.
    assert qr_codes(render_invoice_pdf(document)) == [payload]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"balance_brought_forward": Decimal("120.00")}, "a credit covers it"),
        ({"currency": "EUR"}, "the format is roubles only"),
        ({"status_note": "проект"}, "a draft"),
        ({"payee": Payee(legal_name="ООО Ромашка", inn="7701234567")}, "no bank details"),
    ],
)
def test_no_payment_qr_when_there_is_nothing_to_pay(changes, reason):
    document = _document(**changes)
    assert payment_qr_payload(document) is None, reason
    content = render_invoice_pdf(document)
    assert qr_codes(content) == [], reason
    assert "ES-2026-000007" in pdf_text(content)


def test_credit_brought_forward_lowers_the_amount_due_in_pdf_and_qr():
    document = _document(balance_brought_forward=Decimal("20.50"))
    text = pdf_text(render_invoice_pdf(document))
    assert "Аванс на начало:" in text and "20,50" in text
    assert "99,50" in text
    assert "|Sum=9950|" in payment_qr_payload(document)


def test_many_lines_continue_on_further_pages_with_totals_on_the_last():
    lines = tuple(
        DocumentLine(
            f"Услуга номер {n} с достаточно длинным описанием, чтобы перенестись на вторую строку",
            Decimal("2.5"),
            "шт",
            Decimal("4"),
            Decimal("10.00"),
            Decimal("20"),
            Decimal("1.67"),
        )
        for n in range(1, 61)
    )
    document = _document(
        lines=lines,
        subtotal=Decimal("499.80"),
        vat=Decimal("100.20"),
        total=Decimal("600.00"),
    )
    content = render_invoice_pdf(document)
    pages = pdf_pages_text(content)
    assert len(pages) >= 2
    assert "(продолжение)" in pages[1]
    assert "600,00" in pages[-1] and "Всего по счёту:" in pages[-1]
    assert "Всего по счёту:" not in "".join(pages[:-1])
    text = "".join(pages)
    for n in range(1, 61):
        assert f"Услуга номер {n} " in text
    assert len(qr_codes(content, page=0)) == 1
    assert qr_codes(content, page=len(pages) - 1) == []


def test_pdf_is_stored_once_and_then_served_from_storage(billed):
    first = documents.invoice_pdf(invoice=billed)
    billed.refresh_from_db()
    day = timezone.localdate(billed.issued_at)
    assert billed.pdf.name == f"invoices/{day:%Y}/{day:%m}/{billed.number}.pdf"
    with default_storage.open(billed.pdf.name, "rb") as stored:
        assert stored.read() == first
    assert documents.invoice_pdf(invoice=billed.pk) == first
    assert documents.invoice_pdfs_render(invoice_ids=[billed.pk]) == 0
    # A stored file that went missing is rendered and stored again.
    default_storage.delete(billed.pdf.name)
    again = documents.invoice_pdf(invoice=billed)
    assert billed.number in pdf_text(again)
    billed.refresh_from_db()
    assert default_storage.exists(billed.pdf.name)


def subscribe_many(brand, count: int, price: str = "300.00") -> None:
    """``count`` households on one flat-fee tariff from January 2026."""
    fee = ServiceFactory(brand=brand, name="Абонентская плата", unit="мес")
    tariff = services.tariff_create(
        service=fee, kind="flat", price=price, valid_from=date(2026, 1, 1)
    )
    for _ in range(count):
        services.subscription_create(
            account=AccountFactory(brands=[brand]), tariff=tariff, starts_on=date(2026, 1, 1)
        )


def test_bulk_task_renders_and_stores_each_issued_invoice(ru_brand, bill):
    subscribe_many(ru_brand, 5)
    bill("2026-01")
    invoices = list(Invoice.objects.order_by("pk"))
    assert len(invoices) == 5 and all(not inv.pdf for inv in invoices)
    assert tasks.invoice_documents_deliver([inv.pk for inv in invoices]) == 5
    for invoice in invoices:
        invoice.refresh_from_db()
        with default_storage.open(invoice.pdf.name, "rb") as stored:
            text = pdf_text(stored.read())
        assert f"Счёт № {invoice.number}" in text and "300,00" in text
    # Delivered twice (a q2 retry): nothing is rendered again.
    assert tasks.invoice_documents_deliver([inv.pk for inv in invoices]) == 0


def test_documents_read_only_their_own_invoices_lines(ru_brand, bill):
    """A PDF task reads its invoices' lines invoice by invoice, whatever the planner makes
    of the lines table: ``invoice_id IN (...)`` of a 100-invoice task, planned without
    statistics after a month-end, read all 4,500,000 lines at 1,500,000 accounts. Here
    40 invoices' documents are read from a table of 5,060 lines (5,000 of another)."""
    subscribe_many(ru_brand, 60)
    bill("2026-01")
    invoices = list(Invoice.objects.order_by("pk").values_list("pk", "number"))
    assert len(invoices) == 60
    other = invoices[-1][0]
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO invoicing_invoiceline (invoice_id, position, kind, service_id,
                   description, quantity, unit_price, amount, vat_rate, vat, estimated,
                   starts_on, ends_on, subscription_id, tariff_id)
               SELECT invoice_id, position + n, kind, service_id, description, quantity,
                      unit_price, amount, vat_rate, vat, estimated, starts_on, ends_on,
                      subscription_id, tariff_id
               FROM invoicing_invoiceline, generate_series(1, 5000) n WHERE invoice_id = %s""",
            [other],
        )
        before = rows_read(cursor, "invoicing_invoiceline")
        wanted = [pk for pk, _number in invoices[:40]]
        read_documents = documents.invoice_documents(wanted)
        read = rows_read(cursor, "invoicing_invoiceline") - before
    assert sorted(read_documents) == wanted
    for pk, number in invoices[:40]:
        document = read_documents[pk]
        assert document.number == number
        assert [(line.amount, line.quantity) for line in document.lines] == [
            (Decimal("300.00"), Decimal("1"))
        ]
    assert read == 40, read  # each invoice's one line


def test_draft_pdf_is_marked_has_no_qr_and_is_not_stored(ru_brand, household, subscribe, bill):
    fee = ServiceFactory(brand=ru_brand, name="Абонентская плата", unit="мес")
    subscribe(household, fee, "flat", price="500.00")
    bill("2026-01", mode="draft")
    draft = Invoice.objects.get(account=household)
    assert draft.status == Invoice.Status.DRAFT
    content = documents.invoice_pdf(invoice=draft)
    text = pdf_text(content)
    assert "(проект)" in text and "500,00" in text
    assert qr_codes(content) == []
    draft.refresh_from_db()
    assert draft.pdf.name == ""
    assert documents.invoice_pdfs_render(invoice_ids=[draft.pk]) == 0


def test_voided_invoice_pdf_is_marked_void_without_qr(billed):
    issued = documents.invoice_pdf(invoice=billed)
    assert len(qr_codes(issued)) == 1
    services.invoice_void(invoice=billed, reason="Выставлен по ошибке")
    voided = documents.invoice_pdf(invoice=billed)
    text = pdf_text(voided)
    assert f"Счёт № {billed.number}" in text and "(аннулирован)" in text
    assert qr_codes(voided) == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_renders_store_one_file_per_invoice(ru_brand, bill):
    subscribe_many(ru_brand, 3)
    bill("2026-01")
    ids = list(Invoice.objects.order_by("pk").values_list("pk", flat=True))
    barrier = threading.Barrier(2)
    stored: list[int] = []
    errors: list[BaseException] = []

    def render() -> None:
        try:
            barrier.wait()
            stored.append(documents.invoice_pdfs_render(invoice_ids=ids))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=render) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(stored) == len(ids)  # each invoice recorded by exactly one of the two
    for invoice in Invoice.objects.filter(pk__in=ids):
        directory, _name = invoice.pdf.name.rsplit("/", 1)
        files = default_storage.listdir(directory)[1]
        assert [f for f in files if f.startswith(invoice.number)] == [f"{invoice.number}.pdf"]
        assert invoice.pdf.name.endswith(f"{invoice.number}.pdf")


# --------------------------------------------------------------------------- API


def partner_client(brand) -> APIClient:
    partner = partner_get_or_create(name=f"Partner of {brand.code}", brands=[brand])
    _key, raw_key = api_key_create(partner=partner, brands=[brand])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    return api


def test_api_pdf_for_the_owner_404_for_another_partner(billed, ru_brand):
    url = f"/api/v1/invoices/{billed.pk}/pdf/"
    owner = partner_client(ru_brand)
    for accept in ("*/*", "application/pdf"):
        response = owner.get(url, HTTP_ACCEPT=accept)
        assert response.status_code == 200, accept
        assert response["Content-Type"] == "application/pdf"
        assert response["Content-Disposition"] == f'inline; filename="{billed.number}.pdf"'
        text = pdf_text(response.content)
        assert f"Счёт № {billed.number}" in text and "2 159,56" in text
    other = partner_client(BrandFactory())
    for accept in ("*/*", "application/pdf"):
        response = other.get(url, HTTP_ACCEPT=accept)
        assert response.status_code == 404, accept
        assert response["Content-Type"] == "application/json"
        assert response.json()["code"] == "not_found"
    missing = owner.get(f"/api/v1/invoices/{billed.pk + 1000}/pdf/")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    assert APIClient().get(url).status_code == 401


def test_api_pdf_for_staff_with_the_admins_view_permission(billed):
    staff = UserFactory(is_staff=True)
    staff.save()
    api = APIClient()
    api.force_login(staff)
    refused = api.get(f"/api/v1/invoices/{billed.pk}/pdf/")
    assert (refused.status_code, refused.json()["code"]) == (403, "permission_denied")
    staff.user_permissions.add(Permission.objects.get(codename="view_invoice"))
    response = api.get(f"/api/v1/invoices/{billed.pk}/pdf/")
    assert response.status_code == 200
    assert billed.number in pdf_text(response.content)


def test_schema_describes_the_pdf_as_binary_and_errors_as_json(db):
    schema = yaml.safe_load(APIClient().get("/api/schema/").content)
    operation = schema["paths"]["/api/v1/invoices/{id}/pdf/"]["get"]
    assert operation["responses"]["200"]["content"] == {
        "application/pdf": {"schema": {"type": "string", "format": "binary"}}
    }
    for status in ("401", "404", "429"):
        assert list(operation["responses"][status]["content"]) == ["application/json"]
    assert [p["name"] for p in operation["parameters"]] == ["id"]


# --------------------------------------------------------------------------- admin


def test_admin_invoice_page_links_the_pdf_download(billed, client):
    staff = UserFactory(is_staff=True)
    staff.save()
    staff.user_permissions.add(Permission.objects.get(codename="view_invoice"))
    client.force_login(staff)
    download = reverse("admin:invoicing_invoice_pdf", args=[billed.pk])
    page = client.get(reverse("admin:invoicing_invoice_change", args=[billed.pk]))
    assert page.status_code == 200
    assert f'href="{download}"' in page.content.decode()
    assert (
        f'href="{download}"'
        in client.get(reverse("admin:invoicing_invoice_changelist")).content.decode()
    )
    response = client.get(download)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="{billed.number}.pdf"'
    assert f"Счёт № {billed.number}" in pdf_text(response.content)


def test_admin_pdf_download_needs_view_permission(billed, client):
    staff = UserFactory(is_staff=True)
    staff.save()
    client.force_login(staff)
    response = client.get(reverse("admin:invoicing_invoice_pdf", args=[billed.pk]))
    assert response.status_code == 403
