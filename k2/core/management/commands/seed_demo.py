"""Idempotent demo data for `make run`: a demo trader and a staff user, logins printed."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.accounts.models import User

DEMO_TRADER = "trader@k2.local"
DEMO_STAFF = "admin@k2.local"


class Command(BaseCommand):
    help = "Create (or refresh) the demo trader and staff logins. Refused in production."

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.IS_PRODUCTION:
            raise CommandError("seed_demo never runs in production")
        password = settings.K2_DEMO_PASSWORD
        with transaction.atomic():
            for email, staff in ((DEMO_TRADER, False), (DEMO_STAFF, True)):
                user = User.objects.filter(email=email).first()
                if user is None:
                    user = User(email=email)
                user.is_staff = staff
                user.is_superuser = staff
                user.is_active = True
                user.email_verified = True
                if not user.check_password(password):
                    user.set_password(password)
                user.save()
        self.stdout.write(f"[k2] demo trader:  {DEMO_TRADER} / {password}")
        self.stdout.write(f"[k2] admin (staff): {DEMO_STAFF} / {password}")
