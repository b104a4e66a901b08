"""The README and .env.example document every setting the code reads."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV_READ = re.compile(
    r"""(?:env(?:\.\w+)?|os\.environ\.get|os\.environ\.setdefault|_required)\(\s*["']([A-Z][A-Z0-9_]+)["']"""
)


def settings_read() -> set[str]:
    names: set[str] = set()
    for path in [ROOT / "k2" / "settings.py", ROOT / "k2" / "devstack.py"]:
        names |= set(ENV_READ.findall(path.read_text()))
    names -= {"DJANGO_SETTINGS_MODULE", "PATH"}
    return names


def test_every_setting_is_in_env_example_and_readme():
    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    names = settings_read()
    assert names, "no settings found: the pattern is broken"
    assert sorted(names - documented) == []
    assert sorted(n for n in names if f"{n}=" not in readme) == []


def test_readme_opens_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    head = readme[: readme.index("## Settings")]
    assert "make run" in head
    assert "make test" in head


def test_readme_settings_block_is_env_example():
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("<!-- settings:start -->") : readme.index("<!-- settings:end -->")]
    assert (ROOT / ".env.example").read_text() in block
