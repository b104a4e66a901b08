"""Portfolio constants: performance ranges and P&L methods."""

from __future__ import annotations

PERFORMANCE_RANGES = ("1d", "1w", "1m", "3m", "1y", "all")
PNL_METHODS = ("average", "fifo")
