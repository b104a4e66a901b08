from django.apps import AppConfig


class TestAppConfig(AppConfig):
    """Test-only models (installed when K2_ENV=test)."""

    name = "tests.testapp"
    label = "testapp"
    default_auto_field = "django.db.models.BigAutoField"
