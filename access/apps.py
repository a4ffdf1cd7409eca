from django.apps import AppConfig
from django.db.models.signals import m2m_changed, post_delete, post_save


class AccessConfig(AppConfig):
    name = "access"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "API access"

    def ready(self) -> None:
        from django.apps import apps

        from access.models import ApiKey, Partner
        from access.services import api_key_cache_clear

        # A verified key is cached per process (BILLING_API_KEY_CACHE_SECONDS): any change of
        # a key's scope clears that cache here at once (other processes: within the TTL).
        uid = "access.api_key_cache_clear"
        # A deleted brand takes its links with it (a cascade that sends no m2m signal).
        brand = apps.get_model("brands", "Brand")
        for model in (ApiKey, Partner, ApiKey.brands.through, Partner.brands.through, brand):
            post_save.connect(api_key_cache_clear, sender=model, dispatch_uid=f"{uid}.s.{model}")
            post_delete.connect(api_key_cache_clear, sender=model, dispatch_uid=f"{uid}.d.{model}")
        for through in (ApiKey.brands.through, Partner.brands.through):
            m2m_changed.connect(
                api_key_cache_clear, sender=through, dispatch_uid=f"{uid}.m.{through}"
            )
