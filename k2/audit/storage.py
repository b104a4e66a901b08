"""S3 storage that writes every archive object under Object Lock (WORM) retention."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from storages.backends.s3 import S3Storage


class ObjectLockS3Storage(S3Storage):
    """Objects are written once, in COMPLIANCE mode, retained K2_AUDIT_ARCHIVE_RETENTION_DAYS.

    The bucket must be created with Object Lock enabled."""

    def get_object_parameters(self, name: str) -> dict[str, Any]:
        from k2.audit.services import archive_retain_until

        params = super().get_object_parameters(name)
        params.update(
            ObjectLockMode=getattr(settings, "K2_AUDIT_ARCHIVE_LOCK_MODE", "COMPLIANCE"),
            ObjectLockRetainUntilDate=archive_retain_until(),
            ContentType="application/x-ndjson",
        )
        return params
