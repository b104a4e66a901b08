from django.contrib import admin

from k2.vault.admin import SecretAdminMixin
from tests.testapp.models import VaultSample


@admin.register(VaultSample)
class VaultSampleAdmin(SecretAdminMixin, admin.ModelAdmin):
    list_display = ["id", "label", "secret", "optional"]
    search_fields = ["label"]
