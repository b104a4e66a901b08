from celery import shared_task


@shared_task(acks_late=True, ignore_result=True)
def audit_seal_task() -> int:
    from k2.audit.services import audit_seal_all

    return audit_seal_all()


@shared_task(acks_late=True, ignore_result=True, time_limit=1800)
def audit_archive_task() -> int:
    from k2.audit.services import audit_archive, audit_seal_all

    audit_seal_all()
    return len(audit_archive())
