"""User admin: only a superuser changes privileges (never their own), every change is audited
with before/after; `rotate_jwt_key` refuses an overlap that would log people out."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from apps.accounts.models import SigningKey, User
from k2.audit.models import AuditEntry
from tests.accounts.conftest import get, login, make_client

pytestmark = pytest.mark.django_db(transaction=True)


def _form(user: User, **overrides: Any) -> dict[str, Any]:
    """The change form as the browser posts it, privileges asked for in `overrides`."""
    form: dict[str, Any] = {
        "display_name": user.display_name or "",
        "kyc_status": user.kyc_status,
        "is_active": "on",
        "display_currency": user.display_currency,
        "timezone": user.timezone,
        "sessions-TOTAL_FORMS": "0",
        "sessions-INITIAL_FORMS": "0",
        "oauth_identities-TOTAL_FORMS": "0",
        "oauth_identities-INITIAL_FORMS": "0",
    }
    form.update(overrides)
    return form


@pytest.fixture
def support(user_factory) -> tuple[User, Client]:
    """Staff with view and change on users, not a superuser."""
    member = user_factory("support@example.com", is_staff=True)
    member.user_permissions.add(
        Permission.objects.get(codename="change_user"), Permission.objects.get(codename="view_user")
    )
    client = Client()
    client.force_login(member)
    return member, client


@pytest.fixture
def superuser(user_factory) -> tuple[User, Client]:
    root = user_factory("root@example.com", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(root)
    return root, client


def test_staff_cannot_make_themselves_superuser(support):
    member, client = support
    group = Group.objects.create(name="ops")
    response = client.post(
        f"/admin/accounts/user/{member.pk}/change/",
        _form(member, is_staff="on", is_superuser="on", groups=[group.pk]),
    )
    assert response.status_code == 302
    member.refresh_from_db()
    assert member.is_superuser is False
    assert member.is_staff is True
    assert not member.groups.exists()


def test_staff_cannot_grant_privileges_to_another_user(support, user_factory):
    _, client = support
    customer = user_factory("customer@example.com")
    page = client.get(f"/admin/accounts/user/{customer.pk}/change/")
    assert page.status_code == 200
    assert 'name="is_superuser"' not in page.content.decode()
    response = client.post(
        f"/admin/accounts/user/{customer.pk}/change/",
        _form(customer, is_staff="on", is_superuser="on", display_name="Renamed"),
    )
    assert response.status_code == 302
    customer.refresh_from_db()
    assert (customer.is_staff, customer.is_superuser) == (False, False)
    assert customer.display_name == "Renamed"  # the rest of the form still saves


def test_staff_cannot_deactivate_a_superuser_or_themselves(support, user_factory):
    member, client = support
    root = user_factory("root@example.com", is_staff=True, is_superuser=True)
    for target in (root, member):
        form = _form(target)
        del form["is_active"]  # the box unticked
        response = client.post(f"/admin/accounts/user/{target.pk}/change/", form)
        assert response.status_code == 302
        target.refresh_from_db()
        assert target.is_active is True
    customer = user_factory("customer@example.com")  # other accounts: support's job
    form = _form(customer)
    del form["is_active"]
    assert client.post(f"/admin/accounts/user/{customer.pk}/change/", form).status_code == 302
    customer.refresh_from_db()
    assert customer.is_active is False


def test_superuser_cannot_change_own_privileges(superuser):
    root, client = superuser
    response = client.post(f"/admin/accounts/user/{root.pk}/change/", _form(root))  # boxes unticked
    assert response.status_code == 302
    root.refresh_from_db()
    assert (root.is_staff, root.is_superuser) == (True, True)


def test_superuser_changes_another_users_staff_flag_with_before_and_after(superuser, user_factory):
    root, client = superuser
    customer = user_factory("customer@example.com")
    group = Group.objects.create(name="ops")
    response = client.post(
        f"/admin/accounts/user/{customer.pk}/change/", _form(customer, is_staff="on", groups=[group.pk])
    )
    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.is_staff is True
    assert list(customer.groups.all()) == [group]
    entry = AuditEntry.objects.get(action="user.admin_changed", target_id=str(customer.pk))
    assert entry.actor_id == root.pk
    assert entry.target_type == "accounts.user"
    assert entry.details["values"]["is_staff"] == {"from": "False", "to": "True"}
    assert entry.details["values"]["groups"] == {"from": [], "to": [str(group.pk)]}
    assert "is_superuser" not in entry.details["changed"]


# --- rotate_jwt_key overlap ----------------------------------------------------------------------


def test_rotate_refuses_a_negative_overlap_even_with_force(user_factory):
    user_factory("alice@example.com")
    client = make_client()
    body = login(client, "alice@example.com")
    keys = set(SigningKey.objects.values_list("kid", flat=True))
    for args in (("--overlap-seconds", "-3600", "--prune"), ("--overlap-seconds", "-1", "--force")):
        with pytest.raises(CommandError, match="negative"):
            call_command("rotate_jwt_key", *args)
    assert set(SigningKey.objects.values_list("kid", flat=True)) == keys
    assert get(client, "/v1/users/me", body["access_token"]).status_code == 200


def test_rotate_refuses_an_overlap_shorter_than_access_tokens_unless_forced(settings):
    settings.K2_JWT_ACCESS_TOKEN_LIFETIME = timedelta(minutes=15)
    with pytest.raises(CommandError, match="shorter than the access-token lifetime"):
        call_command("rotate_jwt_key", "--overlap-seconds", "0", "--prune")
    with pytest.raises(CommandError, match="--force"):
        call_command("rotate_jwt_key", "--overlap-seconds", str(15 * 60 - 1))
    assert not SigningKey.objects.exists()
    call_command("rotate_jwt_key", "--overlap-seconds", str(15 * 60))  # exactly the lifetime is enough
    call_command("rotate_jwt_key", "--overlap-seconds", "0", "--force")
    assert SigningKey.objects.filter(retired_at__isnull=True).count() == 1
    assert SigningKey.objects.count() == 2
