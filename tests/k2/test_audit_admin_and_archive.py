"""The audit log in admin (read-only, searchable) and its archive to S3 under Object Lock."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from django.core.files.storage import storages
from django.test import Client

from apps.accounts.models import User
from k2.audit.models import AuditArchive, AuditEntry
from k2.audit.services import audit_archive, audit_seal_all, record

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff_client() -> Client:
    staff = User.objects.create_user(
        "ops@example.com", "correct horse battery staple", is_staff=True, is_superuser=True
    )
    client = Client()
    client.force_login(staff)
    return client


def test_audit_admin_is_searchable_and_read_only(staff_client: Client) -> None:
    entry = record(None, "order.placed", ("trading.order", "o-42"), {"qty": "1"})
    changelist = staff_client.get("/admin/audit/auditentry/")
    assert changelist.status_code == 200
    assert b"order.placed" in changelist.content
    found = staff_client.get("/admin/audit/auditentry/", {"q": "o-42"})
    assert b"order.placed" in found.content
    page = staff_client.get(f"/admin/audit/auditentry/{entry.id}/change/")
    assert page.status_code == 200
    assert b'name="_save"' not in page.content  # no save button: read-only
    assert staff_client.get("/admin/audit/auditentry/add/").status_code == 403
    assert (
        staff_client.post(f"/admin/audit/auditentry/{entry.id}/delete/", {"post": "yes"}).status_code == 403
    )
    assert AuditEntry.objects.filter(id=entry.id).exists()
    audit_seal_all()
    assert staff_client.get("/admin/audit/auditseal/").status_code == 200


@pytest.fixture
def s3_object_lock_bucket(settings: Any) -> Iterator[Any]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    keys = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="k2-audit", ObjectLockEnabledForBucket=True)
    settings.STORAGES = {
        **settings.STORAGES,
        "audit_archive": {
            "BACKEND": "k2.audit.storage.ObjectLockS3Storage",
            "OPTIONS": {"bucket_name": "k2-audit", "endpoint_url": endpoint, "region_name": "us-east-1"},
        },
    }
    storages._storages.pop("audit_archive", None)  # type: ignore[attr-defined]
    try:
        yield s3
    finally:
        storages._storages.pop("audit_archive", None)  # type: ignore[attr-defined]
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_archive_to_s3_is_written_under_compliance_object_lock(s3_object_lock_bucket: Any) -> None:
    s3 = s3_object_lock_bucket
    for i in range(3):
        record(None, "test.event", details={"i": i})
    audit_seal_all()
    archived = audit_archive()
    assert archived
    item = AuditArchive.objects.get(pk=archived[0].pk)
    head = s3.head_object(Bucket="k2-audit", Key=item.storage_name)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"].year >= 2030
    body = s3.get_object(Bucket="k2-audit", Key=item.storage_name)["Body"].read()
    assert b'"action":"test.event"' in body
    version = head.get("VersionId")
    with pytest.raises(Exception, match=r"AccessDenied|locked|retention|Object Lock"):
        s3.delete_object(Bucket="k2-audit", Key=item.storage_name, VersionId=version)
