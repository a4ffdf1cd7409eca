from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payment intake"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from ledger.services import register_payment_check
        from ledger.signals import transaction_posted
        from payments.receivers import refund_overpayment
        from payments.rules import connect_cache_signals, payment_check

        register_payment_check(payment_check)
        connect_cache_signals()
        # Connected after invoicing's receiver (the app comes later): invoices are paid first.
        transaction_posted.connect(refund_overpayment, dispatch_uid="payments.overpayment")
