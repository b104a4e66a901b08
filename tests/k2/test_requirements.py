"""`make run` installs requirements/base.txt only; the test environment has the dev tools too, so a
package the running stack needs but only a dev tool brings in passes every other test and fails
on a fresh machine (kombu's Redis transport imports `packaging`, which only its `redis` extra
declares: the worker and beat of `make run` died at start). Here the stack is imported with every
distribution outside base.txt's closure hidden, as if it were not installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]

# What the Procfile's processes load: the web app (every view and admin), the Celery app with its
# broker transport and every task module, the feed, the user streams, the simulators and every
# management command; with the hidden distributions' modules absent.
IMPORT_THE_STACK = """
import json, os, sys

for name in json.loads(os.environ["K2_TEST_HIDDEN_MODULES"]):
    sys.modules.setdefault(name, None)  # as if not installed: import fails, find_spec says None

import django
django.setup()
import k2.asgi
from k2.celery import app
app.loader.import_default_modules()
app.connection_for_write().transport  # the broker's transport module (kombu.transport.redis)
import apps.marketdata.feed.runner, apps.trading.streams, apps.exchanges.simulators.registry
from django.core.management import get_commands, load_command_class
for name, where in get_commands().items():
    if where.startswith(("apps", "k2")):
        load_command_class(where, name)
print(json.dumps(sorted({m.split(".", 1)[0] for m, v in sys.modules.items() if v is not None})))
"""


def _base_closure() -> set[str]:
    """requirements/base.txt and everything its packages require (extras and markers honoured, for
    this interpreter and platform), read from the installed distributions' metadata."""
    wanted: list[Requirement] = []
    for line in (ROOT / "requirements" / "base.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            wanted.append(Requirement(line))
    seen: dict[str, set[str]] = {}  # distribution -> the extras expanded so far
    while wanted:
        requirement = wanted.pop()
        name = canonicalize_name(requirement.name)
        expanded = seen.get(name)
        if expanded is not None and requirement.extras <= expanded:
            continue
        fresh = ([""] if expanded is None else []) + sorted(requirement.extras - (expanded or set()))
        seen[name] = (expanded or set()) | requirement.extras
        for text in metadata.requires(name) or []:
            dependency = Requirement(text)
            marker = dependency.marker
            if marker is None:
                if expanded is None:
                    wanted.append(dependency)
            elif any(marker.evaluate({"extra": extra}) for extra in fresh):
                wanted.append(dependency)
    return set(seen)


def _hidden_modules(base: set[str]) -> set[str]:
    """Top-level modules that only distributions outside `base` provide."""
    providers: dict[str, set[str]] = {}
    for module, dists in metadata.packages_distributions().items():
        providers.setdefault(module, set()).update(canonicalize_name(d) for d in dists)
    return {module for module, dists in providers.items() if not dists & base and module.isidentifier()}


def test_the_stack_runs_on_the_base_requirements_alone() -> None:
    base = _base_closure()
    hidden = _hidden_modules(base)
    assert {"pytest", "mypy", "ccxt"} <= hidden  # dev tools are hidden; the check has teeth
    assert not {"django", "celery", "kombu", "redis"} & hidden
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_THE_STACK],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "k2.settings",
            "K2_TEST_HIDDEN_MODULES": json.dumps(sorted(hidden)),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    imported = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert {"kombu", "k2", "apps"} <= imported
    assert not imported & hidden
