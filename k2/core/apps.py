from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "k2.core"
    label = "core"
    verbose_name = "K2 platform"
