from django.apps import AppConfig


class VaultConfig(AppConfig):
    name = "k2.vault"
    label = "vault"
    verbose_name = "Secret vault"

    def ready(self) -> None:
        # Refuse to start with missing or malformed master keys rather than fail on first use.
        from k2.vault.providers import check_configuration

        check_configuration()
