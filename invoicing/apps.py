from django.apps import AppConfig


class InvoicingConfig(AppConfig):
    name = "invoicing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from invoicing.receivers import allocate_on_bulk_posting, allocate_on_posting
        from ledger.signals import transaction_posted, transactions_posted

        transaction_posted.connect(allocate_on_posting, dispatch_uid="invoicing.allocate_payments")
        transactions_posted.connect(
            allocate_on_bulk_posting, dispatch_uid="invoicing.allocate_bulk_payments"
        )

        # A service's VAT rate must not change on billed days (brands sit below invoicing).
        from brands.signals import service_vat_rate_changing
        from invoicing.receivers import refuse_vat_change_on_billed_days

        service_vat_rate_changing.connect(
            refuse_vat_change_on_billed_days, dispatch_uid="invoicing.vat_on_billed_days"
        )

        # PDFs and the email outbox (also registers the "invoice_pdf" attachment).
        from invoicing.documents import on_invoices_issued
        from invoicing.signals import invoices_issued

        invoices_issued.connect(on_invoices_issued, dispatch_uid="invoicing.documents")
