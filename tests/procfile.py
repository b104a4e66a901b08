"""What the Procfile gives its processes, for tests that run them as it does."""

from __future__ import annotations

from k2.devstack import ROOT, procfile_env

__all__ = ["ROOT", "procfile_conn_max_age"]


def procfile_conn_max_age(process: str) -> str:
    """The `DATABASE_CONN_MAX_AGE` default the Procfile gives `process` (a kept connection)."""
    found = procfile_env(process).get("DATABASE_CONN_MAX_AGE")
    assert found, f"the Procfile's {process} line sets no DATABASE_CONN_MAX_AGE"
    assert int(found) > 0
    return found
