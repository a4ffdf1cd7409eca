from django.apps import AppConfig


class BrandsConfig(AppConfig):
    name = "brands"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from brands.maker_checker import register_kinds

        register_kinds()
