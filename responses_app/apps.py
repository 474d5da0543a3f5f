from django.apps import AppConfig


class ResponsesAppConfig(AppConfig):
    name = "responses_app"
    verbose_name = "Responses"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from responses_app import conf  # noqa: F401 - connects the setting_changed receiver
        from responses_app.checks import register_checks

        register_checks()
