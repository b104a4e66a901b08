"""The audit log in admin: read-only, searchable. Admin changes are themselves audited."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.db.models import QuerySet
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.http import HttpRequest

from k2.audit.models import AuditArchive, AuditEntry, AuditSeal

# Bulk "Delete selected" deletes through `delete_queryset` and logs with `bulk_create`, so neither
# a ModelAdmin's audited `delete_model` nor the LogEntry receiver below would see it. Every
# deletion goes through the single-object delete view instead, which both audit.
admin.site.disable_action("delete_selected")


def _audit_value(value: Any) -> Any:
    """A form value as the audit log keeps it: text, a related row by its id, related rows as
    their sorted ids, None for empty."""
    if isinstance(value, QuerySet | list | tuple | set):
        return sorted(str(getattr(item, "pk", item)) for item in value)
    value = getattr(value, "pk", value)
    return None if value in (None, "") else str(value)


def form_changes(form: Any, *, change: bool) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """An admin form's changed fields, and each one's value before and after (call only for
    forms without secret fields)."""
    changed = list(form.changed_data) if form is not None else []
    values = {
        name: {
            "from": _audit_value(form.initial.get(name)) if change else None,
            "to": _audit_value(form.cleaned_data.get(name)),
        }
        for name in changed
    }
    return changed, values


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "created_at",
        "action",
        "actor_label",
        "target_type",
        "target_id",
        "ip",
        "request_id",
    )
    list_filter = ("action", "target_type")
    search_fields = ("=id", "action", "actor_label", "=actor_id", "target_id", "=request_id", "=ip")
    date_hierarchy = "created_at"
    show_full_result_count = False


@admin.register(AuditSeal)
class AuditSealAdmin(ReadOnlyAdmin):
    list_display = ("seq", "created_at", "xid_low", "xid_high", "entry_count", "seal_hash")
    search_fields = ("=seq", "seal_hash")
    exclude = ("entry_ids", "entry_hashes")

    @admin.display(description="entries")
    def entry_count(self, obj: AuditSeal) -> int:
        return len(obj.entry_ids)


@admin.register(AuditArchive)
class AuditArchiveAdmin(ReadOnlyAdmin):
    list_display = ("seal", "created_at", "storage_name", "sha256")
    list_select_related = ("seal",)


@receiver(post_save, sender=LogEntry, dispatch_uid="k2_audit_admin_log_entry")
def _audit_admin_change(sender: type[LogEntry], instance: LogEntry, created: bool, **kwargs: Any) -> None:
    if not created:
        return
    from k2.audit.services import record

    action = {1: "admin.add", 2: "admin.change", 3: "admin.delete"}.get(instance.action_flag, "admin.action")
    record(
        instance.user,
        action,
        target=(instance.content_type.model if instance.content_type_id else "", instance.object_id or ""),  # type: ignore[attr-defined]
        details={"object": instance.object_repr[:200], "change": instance.get_change_message()[:1000]},
    )
