from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "k2.audit"
    label = "audit"
    verbose_name = "Audit log"
