from django.apps import AppConfig


class ExchangesConfig(AppConfig):
    name = "apps.exchanges"
    label = "exchanges"
    default_auto_field = "django.db.models.BigAutoField"
