from django.apps import AppConfig


class ProvidersAppConfig(AppConfig):
    name = "providers_app"
    verbose_name = "Providers and routing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks
        from django.db.models.signals import post_delete, post_save

        from providers_app import checks as provider_checks
        from providers_app import registry  # connects the setting_changed receiver
        from providers_app.models import Provider, RoutingRule

        # Cache invalidation only: a changed provider or rule row resets the cached routes.
        for model in (Provider, RoutingRule):
            for label, signal in (("save", post_save), ("delete", post_delete)):
                signal.connect(
                    registry.reset_on_row_change,
                    sender=model,
                    dispatch_uid=f"providers-reset-{label}-{model.__name__}",
                )
        checks.register(provider_checks.check_provider_config, "openresponses")
        checks.register(provider_checks.check_provider_rows, "openresponses", checks.Tags.database)
