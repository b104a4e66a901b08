from django.apps import AppConfig


class VaultConfig(AppConfig):
    name = "k2.vault"
    label = "vault"
    verbose_name = "Secret vault"
