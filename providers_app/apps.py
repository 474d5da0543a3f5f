from django.apps import AppConfig


class ProvidersAppConfig(AppConfig):
    name = "providers_app"
    verbose_name = "Providers and routing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import registry  # noqa: F401 - connects the setting_changed receiver
