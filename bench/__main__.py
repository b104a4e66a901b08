"""List (`python -m bench`) or run (`python -m bench <name> [args...]`) the benchmarks in bench/."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import bench


def available() -> dict[str, str]:
    found = {}
    for info in pkgutil.iter_modules(bench.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{info.name}")
        if callable(getattr(module, "main", None)):
            found[info.name] = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""
    return found


def run(argv: list[str]) -> int:
    benches = available()
    if not argv or argv[0] not in benches:
        print("benchmarks (python -m bench <name> [args]):")
        for name, doc in sorted(benches.items()):
            print(f"  {name:28} {doc}")
        return 0 if not argv else 2
    module = importlib.import_module(f"bench.{argv[0]}")
    return int(module.main(argv[1:]))


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
