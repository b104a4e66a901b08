"""Account emails leave after commit from background threads (apps/accounts/emails.py): a request
never waits on the mail server, so a password reset for an address with an account answers as
fast as one for an address without; a failed delivery is logged without address or token and
never reaches the request; the process waits a bounded time for pending sends at exit.

The mail servers here are test backends that really block (on a `threading.Event`) or fail."""

from __future__ import annotations

import logging
import os
import re
import smtplib
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage

from apps.accounts import emails
from tests.accounts.conftest import PASSWORD, data, error, make_client, post, token_from_mail

pytestmark = pytest.mark.django_db(transaction=True)

HOLD_SECONDS = 5.0  # how long the blocking backend holds a send before giving up


class BlockingBackend(BaseEmailBackend):
    """Delivers to `mail.outbox`, but only once the test sets `release`."""

    entered: ClassVar[threading.Event]
    release: ClassVar[threading.Event]
    finished: ClassVar[threading.Event]

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        BlockingBackend.entered.set()
        try:
            if not BlockingBackend.release.wait(HOLD_SECONDS):
                raise TimeoutError("the test never released the mail backend")
            mail.outbox.extend(email_messages)
            return len(email_messages)
        finally:
            BlockingBackend.finished.set()


class RefusingBackend(BaseEmailBackend):
    """An SMTP server refusing the recipient, naming it in the error (as real ones do)."""

    seen: ClassVar[list[EmailMessage]] = []

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        RefusingBackend.seen.extend(email_messages)
        to = email_messages[0].to[0]
        raise smtplib.SMTPRecipientsRefused({to: (550, f"5.1.1 <{to}>: no such mailbox".encode())})


@pytest.fixture
def blocking_backend(settings: Any) -> Iterator[type[BlockingBackend]]:
    BlockingBackend.entered, BlockingBackend.release = threading.Event(), threading.Event()
    BlockingBackend.finished = threading.Event()
    settings.EMAIL_BACKEND = f"{__name__}.BlockingBackend"
    yield BlockingBackend
    BlockingBackend.release.set()  # never leave a sender thread held


def test_a_reset_request_does_not_wait_for_the_mail_server(user_factory, blocking_backend):
    user_factory("slow@example.com")
    known = post(make_client(), "/v1/auth/password/reset", {"email": "slow@example.com"})
    assert known.status_code == 202, known.content
    assert blocking_backend.entered.wait(HOLD_SECONDS), "the email was never handed to the backend"
    # answered while the mail server still holds the email
    assert not blocking_backend.finished.is_set()
    assert mail.outbox == []
    unknown = post(make_client(), "/v1/auth/password/reset", {"email": "nobody@example.com"})
    assert unknown.status_code == 202
    assert data(unknown) == data(known)

    blocking_backend.release.set()
    assert emails.wait_for_pending()
    assert [m.to for m in mail.outbox] == [["slow@example.com"]]
    # the delivered link works
    reset = {"token": token_from_mail("reset-password"), "new_password": "a brand new passphrase"}
    assert data(post(make_client(), "/v1/auth/password/reset/confirm", reset))
    error(
        post(make_client(), "/v1/auth/login", {"email": "slow@example.com", "password": PASSWORD}),
        401,
        "INVALID_CREDENTIALS",
    )


def test_a_refused_delivery_is_logged_without_address_or_token(user_factory, settings, caplog):
    settings.EMAIL_BACKEND = f"{__name__}.RefusingBackend"
    RefusingBackend.seen = []
    user_factory("refused@example.com")
    with caplog.at_level(logging.INFO):
        response = post(make_client(), "/v1/auth/password/reset", {"email": "refused@example.com"})
        assert response.status_code == 202, response.content
        assert emails.wait_for_pending()
    assert len(RefusingBackend.seen) == 1
    token = re.search(r"token=([A-Za-z0-9_\-]+)", str(RefusingBackend.seen[0].body))
    assert token
    failures = [r for r in caplog.records if "account_email_failed" in r.getMessage()]
    assert len(failures) == 1, caplog.text
    assert failures[0].threadName.startswith("k2-account-email-")  # off the request
    assert "SMTPRecipientsRefused" in failures[0].getMessage()
    assert "refused@example.com" not in caplog.text
    assert token.group(1) not in caplog.text


def test_a_send_that_breaks_before_the_backend_is_logged_not_raised(user_factory, settings, caplog):
    # a reset link template naming the wrong field fails while the email is built
    settings.K2_PASSWORD_RESET_URL = "https://k2.test/reset?token={tokn}"
    user_factory("template@example.com")
    with caplog.at_level(logging.WARNING):
        response = post(make_client(), "/v1/auth/password/reset", {"email": "template@example.com"})
        assert response.status_code == 202, response.content
        assert emails.wait_for_pending()
    failures = [r.getMessage() for r in caplog.records if "account_email_failed" in r.getMessage()]
    assert len(failures) == 1, caplog.text
    assert "KeyError" in failures[0]
    assert "template@example.com" not in caplog.text
    assert mail.outbox == []


def test_a_full_queue_drops_and_logs_instead_of_making_the_request_wait(
    user_factory, blocking_backend, monkeypatch, caplog
):
    monkeypatch.setattr(emails, "MAX_PENDING", 1)
    user_factory("first@example.com")
    user_factory("second@example.com")
    with caplog.at_level(logging.WARNING):
        for email in ("first@example.com", "second@example.com"):
            started = time.monotonic()
            assert post(make_client(), "/v1/auth/password/reset", {"email": email}).status_code == 202
            assert time.monotonic() - started < HOLD_SECONDS / 2
        blocking_backend.release.set()
        assert emails.wait_for_pending()
    assert [m.to for m in mail.outbox] == [["first@example.com"]]
    dropped = [r.getMessage() for r in caplog.records if "account_email_dropped" in r.getMessage()]
    assert len(dropped) == 1, caplog.text
    assert "second@example.com" not in caplog.text


EXIT_SCRIPT = textwrap.dedent(
    """
    import time, django
    django.setup()
    from django.core.mail.backends.base import BaseEmailBackend
    from django.test.utils import override_settings
    from apps.accounts import emails

    class SlowBackend(BaseEmailBackend):
        def send_messages(self, messages):
            if "forever" in messages[0].subject:
                time.sleep(3600)
            time.sleep(0.5)
            print("DELIVERED", messages[0].subject, flush=True)
            return 1

    emails.EXIT_GRACE_SECONDS = 3.0
    override_settings(EMAIL_BACKEND="__main__.SlowBackend").enable()
    emails.send_after_commit(emails.send_security_notice, "a@example.com", "slow", "body", "test")
    emails.send_after_commit(emails.send_security_notice, "b@example.com", "forever", "body", "test")
    print("MAIN DONE", flush=True)
    """
)


def test_the_process_waits_a_bounded_time_for_pending_sends_at_exit():
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=os.getcwd(),
        env={**os.environ, "K2_ENV": "test"},
        check=False,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    # the main thread was done before the slow send, which still went out before exit
    assert done.stdout.splitlines()[-2:] == ["MAIN DONE", "DELIVERED [K2] slow"], done.stdout
    # the one that never ends was abandoned after the grace period, and said so
    assert "account_emails_abandoned_at_exit" in done.stdout + done.stderr
    assert 3.0 <= elapsed < 30, elapsed  # waited the grace period, and no longer
