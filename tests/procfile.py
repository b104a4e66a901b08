"""What the Procfile gives its processes, for tests that run them as it does."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def procfile_conn_max_age(process: str) -> str:
    """The `DATABASE_CONN_MAX_AGE` default the Procfile gives `process` (a kept connection)."""
    line = next(x for x in (ROOT / "Procfile").read_text().splitlines() if x.startswith(f"{process}:"))
    found = re.search(r"DATABASE_CONN_MAX_AGE=\$\{DATABASE_CONN_MAX_AGE:-(\d+)\}", line)
    assert found, f"the Procfile's {process} line sets no DATABASE_CONN_MAX_AGE"
    assert int(found.group(1)) > 0
    return found.group(1)
