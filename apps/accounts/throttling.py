"""Brute-force limits kept in Redis through the Django cache (shared by every replica).

- Failed logins: counted per account (normalised email, hashed) and per client IP in a fixed
  window of `K2_LOGIN_FAILURE_WINDOW_SECONDS`; once either reaches its maximum, login is
  refused with 429 + Retry-After *before* the password is checked, until the window ends.
  Each attempt is counted (atomically) before its password is checked, so concurrent guesses
  share the limit; a successful login clears the account counter and takes its attempt back
  from the IP counter.
- 2FA attempts: failures per user (`K2_TOTP_MAX_FAILURES` per `K2_TOTP_FAILURE_WINDOW_SECONDS`),
  on top of django-otp's exponential back-off on the device itself.
- Request-rate scopes for DRF (`auth`, `auth_email`) are set in REST_FRAMEWORK throttle rates.
"""

from __future__ import annotations

import hashlib
import math
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.exceptions import Throttled

_PREFIX = "accounts:fail:"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


class FailureCounter:
    """A fixed-window failure counter: `check` raises Throttled once `limit` failures are counted."""

    def __init__(self, scope: str, subject: str, *, limit: int, window: int) -> None:
        self.key = f"{_PREFIX}{scope}:{_digest(subject)}"
        self.limit = limit
        self.window = window

    def retry_after(self) -> int | None:
        count = cache.get(self.key) or 0
        if count < self.limit:
            return None
        reset_at = cache.get(self.key + ":reset") or (time.time() + self.window)
        return max(1, math.ceil(reset_at - time.time()))

    def check(self) -> None:
        wait = self.retry_after()
        if wait is not None:
            raise Throttled(wait=wait, detail="Too many failed attempts. Try again later.")

    def fail(self) -> int:
        if cache.add(self.key, 1, self.window):
            cache.set(self.key + ":reset", time.time() + self.window, self.window)
            return 1
        try:
            return int(cache.incr(self.key))
        except ValueError:  # expired between add and incr
            cache.set(self.key, 1, self.window)
            cache.set(self.key + ":reset", time.time() + self.window, self.window)
            return 1

    def reset(self) -> None:
        cache.delete_many([self.key, self.key + ":reset"])

    def forgive(self) -> None:
        """Take back one attempt counted before it was known to succeed (its window may have
        ended meanwhile: then there is nothing to take back)."""
        try:
            if int(cache.decr(self.key)) < 0:
                cache.delete(self.key)
        except ValueError:
            pass


def login_account_counter(email: str) -> FailureCounter:
    return FailureCounter(
        "login-account",
        email.strip().lower(),
        limit=settings.K2_LOGIN_MAX_FAILURES_PER_ACCOUNT,
        window=settings.K2_LOGIN_FAILURE_WINDOW_SECONDS,
    )


def login_ip_counter(ip: str | None) -> FailureCounter:
    return FailureCounter(
        "login-ip",
        ip or "unknown",
        limit=settings.K2_LOGIN_MAX_FAILURES_PER_IP,
        window=settings.K2_LOGIN_FAILURE_WINDOW_SECONDS,
    )


class LoginRefused(Exception):
    """A sign-in attempt over the failure limit of its account or IP (`scope`)."""

    def __init__(self, scope: str, wait: int) -> None:
        super().__init__(scope)
        self.scope, self.wait = scope, wait


class LoginAttempt:
    """A sign-in attempt, counted against its account and IP (`login_attempt`)."""

    def __init__(self, account: FailureCounter, ip: FailureCounter) -> None:
        self.account, self.ip = account, ip

    def succeeded(self) -> None:
        """The account's failures are cleared and the attempt is taken back from the IP."""
        self.account.reset()
        self.ip.forgive()


def login_attempt(*, email: str, ip: str | None) -> LoginAttempt:
    """Count a sign-in attempt (API or admin) against its account and IP before its password is
    checked, or raise `LoginRefused` when either is over its limit. Counted with atomic
    increments, so concurrent guesses cannot all pass: neither many at one account nor many from
    one address at many accounts. Call `succeeded()` once the sign-in is good."""
    account, address = login_account_counter(email), login_ip_counter(ip)
    for scope, counter in (("account", account), ("ip", address)):
        wait = counter.retry_after()
        if wait is not None:
            raise LoginRefused(scope, wait)
    for scope, counter in (("ip", address), ("account", account)):
        if counter.fail() > counter.limit:
            raise LoginRefused(scope, counter.retry_after() or 1)
    return LoginAttempt(account, address)


def two_factor_counter(user_id: str) -> FailureCounter:
    return FailureCounter(
        "2fa-user",
        user_id,
        limit=settings.K2_TOTP_MAX_FAILURES,
        window=settings.K2_TOTP_FAILURE_WINDOW_SECONDS,
    )
