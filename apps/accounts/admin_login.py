"""Admin console sign-in (/admin/login/): the same brute-force limits and TOTP 2FA as the API
login, and an audit entry for each admin sign-in and each failed one.

- `AdminLoginForm` counts every attempt against the per-account and per-IP login limits
  before the password is checked (`throttling.login_attempt`, as `services.auth_login` does)
  and refuses once either is over; a success clears the account count and takes the attempt
  back from the IP count.
- A user with TOTP on must also give a current code (`otp_token`), or in its place one of their
  recovery codes (spent: each works once), checked by the same service code as the API's 2FA
  step (`services.two_factor_code_check`); a wrong or missing code is a failed attempt.
- Receivers of `user_logged_in` / `user_login_failed` record `auth.admin_login` and
  `auth.admin_login_failed` for requests under the admin, with the client IP and, for a sign-in,
  the second factor used (`totp`, `recovery_code` or `none`). The password (in
  `user_login_failed`'s credentials) and the codes are never recorded, only the username.
"""

from __future__ import annotations

from typing import Any, NoReturn

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.exceptions import ValidationError
from django.dispatch import receiver
from django.http import HttpRequest
from django.urls import reverse

from apps.accounts import throttling
from apps.accounts.models import User
from apps.accounts.services import two_factor_code_check
from k2.audit.services import record
from k2.observability.middleware import client_ip

_THROTTLED = "Too many failed sign-in attempts. Try again later."
_CODE_MISSING = "Enter the code from your authenticator app, or one of your recovery codes."
_CODE_WRONG = "The authenticator code is not valid."
_RECOVERY_CODE_WRONG = "The recovery code is not valid or has already been used."
_CODE_LOCKED = "Too many wrong codes. Try again later."
# The second factor of a sign-in, set on the user by the form for the `user_logged_in` receiver.
_SECOND_FACTOR_ATTR = "_k2_admin_second_factor"


def _is_admin_request(request: HttpRequest | None) -> bool:
    return request is not None and request.path.startswith(reverse("admin:index"))


def _audit_failed(request: HttpRequest | None, *, email: str, reason: str, user: User | None = None) -> None:
    ip = client_ip(request) if request is not None else None
    details = {"email": email, "reason": reason}
    record("anonymous", "auth.admin_login_failed", target=user, details=details, ip=ip)


class AdminLoginForm(AdminAuthenticationForm):
    """The admin's login form with the API login's failure limits and 2FA step (TOTP or recovery code)."""

    otp_token = forms.CharField(
        label="Authenticator or recovery code",
        required=False,
        max_length=32,
        strip=True,
        help_text=(
            "Required when two-factor authentication is on for your account. Without your "
            "authenticator, enter one of your recovery codes instead: each works once."
        ),
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autocapitalize": "off"}),
    )

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is None or not password:
            return super().clean()  # a required field is missing: no attempt to count
        email = username.strip().lower()
        request = self.request
        try:  # counted before the password is checked, as the API login is
            attempt = throttling.login_attempt(
                email=email, ip=client_ip(request) if request is not None else None
            )
        except throttling.LoginRefused as refused:
            self._refuse_throttled(email=email, scope=refused.scope)
        try:
            super().clean()  # authenticate (failures reach `user_login_failed`) and is_staff
        except ValidationError:
            if self.user_cache is not None:  # right password, not allowed in (inactive or not staff)
                _audit_failed(request, email=email, reason="not_allowed", user=self.user_cache)
            raise
        user = self.user_cache
        assert isinstance(user, User)
        if user.totp_enabled:
            self._check_second_factor(user, email=email)
        attempt.succeeded()
        return self.cleaned_data

    def _refuse_throttled(self, *, email: str, scope: str) -> NoReturn:
        _audit_failed(self.request, email=email, reason=f"throttled_{scope}")
        raise ValidationError(_THROTTLED, code="throttled")

    def _check_second_factor(self, user: User, *, email: str) -> None:
        code = self.cleaned_data.get("otp_token") or ""
        counter = throttling.two_factor_counter(str(user.pk))
        if not code:
            _audit_failed(self.request, email=email, reason="missing_code", user=user)
            raise ValidationError(_CODE_MISSING, code="otp_missing")
        if counter.retry_after() is not None:
            _audit_failed(self.request, email=email, reason="throttled_2fa", user=user)
            raise ValidationError(_CODE_LOCKED, code="otp_throttled")
        result = two_factor_code_check(user=user, code=code)
        if result.ok:
            counter.reset()
            setattr(user, _SECOND_FACTOR_ATTR, result.method)
            return
        recovery = result.method == "recovery_code"
        reason = "wrong_recovery_code" if recovery else "wrong_code"
        _audit_failed(self.request, email=email, reason=reason, user=user)
        if result.locked_seconds is not None:
            raise ValidationError(_CODE_LOCKED, code="otp_throttled")
        counter.fail()
        raise ValidationError(_RECOVERY_CODE_WRONG if recovery else _CODE_WRONG, code="otp_invalid")


@receiver(user_logged_in, dispatch_uid="accounts_admin_login_audit")
def _audit_admin_login(sender: Any, request: HttpRequest | None, user: User, **kwargs: Any) -> None:
    if not _is_admin_request(request):
        return
    assert request is not None
    second_factor = getattr(user, _SECOND_FACTOR_ATTR, "totp" if user.totp_enabled else "none")
    details = {"second_factor": second_factor}
    record(user, "auth.admin_login", target=user, details=details, ip=client_ip(request))


@receiver(user_login_failed, dispatch_uid="accounts_admin_login_failed_audit")
def _audit_admin_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    if not _is_admin_request(request):
        return
    email = str(credentials.get("username") or credentials.get("email") or "").strip().lower()
    user = User.objects.filter(email__iexact=email).first() if email else None
    reason = "unknown_email" if user is None else "wrong_password"
    _audit_failed(request, email=email, reason=reason, user=user)
