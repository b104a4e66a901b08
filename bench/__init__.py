"""K2 benchmarks. `python -m bench` lists them; `python -m bench <name> [args]` runs one.

A benchmark is a module in this package with a `main(argv: list[str]) -> int` function and a
one-line module docstring.
"""
