"""Production refuses to start without its secrets and passes `check --deploy`; Sentry is opt-in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECRET = "p" + "Zq8-rT2w_Lm4nV7xB1cK9dF3gH6jS0aE5yU" * 2

PRODUCTION = {
    "K2_ENV": "production",
    "DJANGO_SECRET_KEY": SECRET,
    "DJANGO_ALLOWED_HOSTS": "api.k2.example",
    "DATABASE_URL": "postgres://k2:pw@127.0.0.1:1/k2",
    "REDIS_URL": "redis://127.0.0.1:1/0",
    "K2_VAULT_MASTER_KEYS": "prod-1:" + "A" * 43 + "=",
    "K2_VAULT_ACTIVE_KEY_ID": "prod-1",
}


def run_manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("K2_", "DJANGO_", "DATABASE_", "REDIS_"))
    }
    clean["K2_VAR_DIR"] = "/nonexistent-k2-var"  # no devstack.env fallback
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_is_clean_in_production():
    result = run_manage(PRODUCTION, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_each_secret():
    for missing in ("DJANGO_SECRET_KEY", "K2_VAULT_MASTER_KEYS", "DATABASE_URL", "REDIS_URL"):
        env = {k: v for k, v in PRODUCTION.items() if k != missing}
        result = run_manage(env, "check")
        assert result.returncode != 0, missing
        assert missing in result.stderr
        assert SECRET not in result.stderr


def test_production_refuses_debug_and_weak_secret_key():
    assert run_manage({**PRODUCTION, "DJANGO_DEBUG": "true"}, "check").returncode != 0
    result = run_manage({**PRODUCTION, "DJANGO_SECRET_KEY": "short"}, "check")
    assert result.returncode != 0
    assert "too weak" in result.stderr


def test_sentry_initialised_only_when_dsn_set():
    probe = "import django; django.setup(); import sentry_sdk; print(sentry_sdk.get_client().is_active())"
    base = {**PRODUCTION, "K2_ENV": "development"}

    def active(extra: dict[str, str]) -> str:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("K2_", "DJANGO_", "SENTRY_"))}
        clean.update({"DJANGO_SETTINGS_MODULE": "k2.settings", "K2_VAR_DIR": "/nonexistent-k2-var"})
        result = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=ROOT,
            env={**clean, **base, **extra},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return result.stdout.strip().splitlines()[-1]

    assert active({}) == "False"
    assert active({"SENTRY_DSN": "http://public@127.0.0.1:9/1"}) == "True"
