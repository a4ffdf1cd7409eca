from django.apps import AppConfig


class PartnersConfig(AppConfig):
    name = "partners"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Partners and API"

    def ready(self) -> None:
        # Connect the webhook outbox receivers to the ledger and account signals.
        from partners import webhooks

        webhooks.connect()
