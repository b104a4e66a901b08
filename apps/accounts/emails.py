"""Account emails through Django's email backend (EMAIL_BACKEND; console in development,
locmem in tests). The notifications app will take these over once it exists.

Sent off the request: services hand a send to `send_after_commit`, which queues it when the
transaction commits, and a few background threads here deliver it. So no request waits on the
mail server, and a request that sends an email (password reset for an existing account) takes
as long as one that does not (an unknown address), which would otherwise tell who has an
account. Not a Celery task on purpose: the emails carry secrets (reset and verification
tokens), which must never be written to the broker (Redis) or its logs.

- A delivery failure is logged (kind and error type only: never the address or the token) and
  never raised.
- At most `MAX_PENDING` emails wait per process; past that a send is dropped and logged as an
  error, so a stalled mail server cannot grow memory without bound (or make requests wait).
- The threads are daemon threads, so a pending send never keeps the process alive by itself:
  at exit the process waits up to `EXIT_GRACE_SECONDS` for pending sends, then exits and logs
  how many it abandoned. A process killed outright (SIGKILL, `os._exit`, as Celery's prefork
  children end) loses what is pending.
- `wait_for_pending()` waits until everything queued so far is delivered (or failed); tests
  call it before reading `django.core.mail.outbox`.
"""

from __future__ import annotations

import atexit
import contextvars
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction

from k2.observability.logging import get_logger

log = get_logger(__name__)

WORKERS = 2
MAX_PENDING = 1000
EXIT_GRACE_SECONDS = 10.0


class _Sender:
    """A few daemon threads delivering queued sends, with a count of those not yet done."""

    def __init__(self) -> None:
        self._done = threading.Condition()
        self._pending = 0
        self._queue: queue.SimpleQueue[tuple[contextvars.Context, Callable[..., None], tuple[Any, ...]]] = (
            queue.SimpleQueue()
        )
        self._threads: list[threading.Thread] = []

    def submit(self, func: Callable[..., None], args: tuple[Any, ...]) -> None:
        with self._done:
            if self._pending >= MAX_PENDING:
                log.error("account_email_dropped", kind=func.__name__, pending=self._pending)
                return
            self._pending += 1
            if not self._threads:
                self._start()
        # the caller's context (request id, user id) goes along, so the send's logs carry it
        self._queue.put((contextvars.copy_context(), func, args))

    def _start(self) -> None:
        for number in range(WORKERS):
            thread = threading.Thread(target=self._work, name=f"k2-account-email-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        while True:
            context, func, args = self._queue.get()
            try:
                context.run(func, *args)
            except Exception as exc:  # never let one send end the thread
                log.warning("account_email_failed", kind=func.__name__, error_type=type(exc).__name__)
            finally:
                with self._done:
                    self._pending -= 1
                    if not self._pending:
                        self._done.notify_all()

    def wait(self, timeout: float) -> bool:
        with self._done:
            return self._done.wait_for(lambda: not self._pending, timeout)

    @property
    def pending(self) -> int:
        return self._pending


_sender = _Sender()


def _reset_after_fork() -> None:
    # a forked child has none of the parent's threads: start afresh, with nothing pending
    global _sender
    _sender = _Sender()


os.register_at_fork(after_in_child=_reset_after_fork)


def send_after_commit(func: Callable[..., None], *args: Any) -> None:
    """Deliver `func(*args)` (one of the senders below) in the background once the current
    transaction commits; nothing is sent if it rolls back."""
    transaction.on_commit(lambda: _sender.submit(func, args))


def wait_for_pending(timeout: float = 10.0) -> bool:
    """Wait until every send queued so far is done (delivered or failed); False on timeout."""
    return _sender.wait(timeout)


@atexit.register
def _drain_at_exit() -> None:
    if not _sender.wait(EXIT_GRACE_SECONDS):
        log.warning("account_emails_abandoned_at_exit", pending=_sender.pending)


def _send(to: str, subject: str, body: str, kind: str) -> None:
    try:
        send_mail(f"[K2] {subject}", body, settings.DEFAULT_FROM_EMAIL, [to], fail_silently=False)
    except Exception as exc:
        log.warning("account_email_failed", kind=kind, error_type=type(exc).__name__)
    else:
        log.info("account_email_sent", kind=kind)


def send_verification_email(to: str, token: str) -> None:
    link = settings.K2_VERIFY_EMAIL_URL.format(token=token)
    _send(
        to,
        "Confirm your email address",
        "Welcome to K2.\n\nConfirm your email address by opening this link:\n\n"
        f"{link}\n\nOr send this code to POST /v1/auth/verify-email:\n\n{token}\n\n"
        "If you did not create a K2 account, ignore this email.\n",
        "verify_email",
    )


def send_already_registered_email(to: str) -> None:
    _send(
        to,
        "Someone tried to register with your email",
        "Someone (perhaps you) tried to create a K2 account with this email address, but it "
        "already has one.\n\nIf it was you, sign in, or reset your password if you forgot it.\n"
        "If it was not you, you can ignore this email; your account is unchanged.\n",
        "already_registered",
    )


def send_password_reset_email(to: str, token: str) -> None:
    link = settings.K2_PASSWORD_RESET_URL.format(token=token)
    _send(
        to,
        "Reset your password",
        f"A password reset was requested for your K2 account.\n\nOpen this link:\n\n{link}\n\n"
        f"Or send this code to POST /v1/auth/password/reset/confirm:\n\n{token}\n\n"
        "If you did not ask for this, ignore this email; your password is unchanged.\n",
        "password_reset",
    )


def send_security_notice(to: str, subject: str, body: str, kind: str) -> None:
    _send(
        to,
        subject,
        f"{body}\n\nIf this was not you, reset your password and review your sessions now.\n",
        kind,
    )
