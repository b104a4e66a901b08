"""The risk checks' read of a user's recent activity (velocity, daily notional, sizes) as the
user's orders today grow: with the partial indexes it reads on, and without them.

    python -m k2.devstack run --durable -- python -m bench risk_activity [--orders 1000,5000] [--reads 200]

Real PostgreSQL from the devstack. One user's orders today (spread over the day before the
checked order, none in its velocity window) are either mostly cancelled unfilled, as an active
trader's resting orders are (90 %), or all filled; or, all filled, on another instrument than
the checked order's (its first on a new instrument, after a day of trading another). 50 other
users hold as many orders again. Each read is `selectors.recent_activity`, the statement the
risk check runs under the user's lock for every order; "without the indexes" drops
`orders_user_daily_notional` and `orders_user_instrument_sizes` in a transaction that is rolled
back (the same data: the statement reads every order of the user's today for the daily
notional, and all of the user's orders newest first until it has the instrument's sizes).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bench.trading import percentile

OTHER_USERS = 50
# (shape, share of the user's orders cancelled unfilled, the instrument they are on)
SHAPES = [
    ("90 % cancelled unfilled", 0.9, "BTC-USD"),
    ("all filled", 0.0, "BTC-USD"),
    ("all filled, other instrument", 0.0, "ETH-USD"),
]
INDEXES = ("orders_user_daily_notional", "orders_user_instrument_sizes")


def _clone(
    template: Any,
    count: int,
    *,
    user_id: Any,
    status: str,
    filled: bool,
    start: datetime,
    end: datetime,
    instrument: str,
) -> None:
    """`count` copies of the template order for `user_id` on `instrument`, created evenly between
    start and end."""
    from django.db import connection

    from apps.trading.models import Order

    columns = [f.column for f in Order._meta.concrete_fields]
    values = {
        "id": "gen_random_uuid()",
        "user_id": "%(user)s",
        "client_order_id": "%(tag)s || g::text",
        "instrument": "%(instrument)s",
        "venue_client_order_id": "gen_random_uuid()::text",
        "created_at": "%(start)s::timestamptz + (g * %(step)s::float8) * interval '1 second'",
        "submitted_at": "%(start)s",
        "status": "%(status)s",
        "filled_quantity": "quantity" if filled else "0",
    }
    select = ", ".join(values.get(column, column) for column in columns)
    step = (end - start).total_seconds() / (count + 1)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO orders ({', '.join(columns)}) SELECT {select} "
            "FROM orders, generate_series(1, %(count)s) g WHERE orders.id = %(template)s",
            {
                "user": user_id, "tag": f"bench-{uuid.uuid4().hex[:8]}-", "start": start, "step": step,
                "status": status, "count": count, "template": template.pk, "instrument": instrument,
            },
        )  # fmt: skip


def _time_reads(scope: Any, reads: int) -> list[float]:
    from apps.trading.selectors import recent_activity

    for _ in range(5):  # warm
        recent_activity(scope)
    samples = []
    for _ in range(reads):
        started = time.perf_counter()
        recent_activity(scope)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def run(sizes: list[int], reads: int) -> list[tuple[str, int, list[float], list[float]]]:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.db import connection, transaction

    from apps.accounts.models import User
    from apps.trading import risk
    from apps.trading.models import Order

    # The checked order's moment: late in today (UTC), so that the day's orders come before it.
    now = datetime.now(UTC).replace(hour=23, minute=0, second=0, microsecond=0)
    day = now.replace(hour=0)
    others = [
        User.objects.create_user(f"bench-risk-{uuid.uuid4().hex[:8]}@example.com", None)
        for _ in range(OTHER_USERS)
    ]
    rows = []
    for shape, cancelled_share, instrument in SHAPES:
        user = User.objects.create_user(f"bench-risk-{uuid.uuid4().hex[:8]}@example.com", None)
        template = Order.objects.create(
            user=user, client_order_id=f"bench-{uuid.uuid4().hex[:8]}", exchange="cryptocom",
            instrument="BTC-USD", instrument_type="crypto", side="buy", order_type="limit",
            quantity=Decimal("0.001"), price=Decimal("60000"), notional=Decimal("60"),
            status="pending",
        )  # fmt: skip
        Order.objects.filter(pk=template.pk).update(created_at=now, submitted_at=None)
        scope = risk._activity_scope(Order.objects.get(pk=template.pk), now)
        have = 0
        for size in sizes:
            add = size - have
            cancelled = round(add * cancelled_share)
            for status, count, filled in (("cancelled", cancelled, False), ("filled", add - cancelled, True)):
                if count:
                    _clone(
                        template,
                        count,
                        user_id=user.pk,
                        status=status,
                        filled=filled,
                        start=day,
                        end=now - timedelta(minutes=5),
                        instrument=instrument,
                    )
            for other in others:
                _clone(
                    template,
                    max(1, add // OTHER_USERS),
                    user_id=other.pk,
                    status="cancelled",
                    filled=False,
                    start=day,
                    end=now,
                    instrument="BTC-USD",
                )
            have = size
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE orders")  # as autovacuum would have, in a day
            with_index = _time_reads(scope, reads)
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(f"DROP INDEX {', '.join(INDEXES)}")
                without = _time_reads(scope, reads)
                transaction.set_rollback(True)
            rows.append((shape, size, with_index, without))
    return rows


def print_table(rows: list[tuple[str, int, list[float], list[float]]]) -> None:
    print(f"{'orders today':>12}  {'shape':28} {'with indexes p50/p99 ms':>24} {'without p50/p99 ms':>20}")
    print("-" * 88)
    for shape, size, with_index, without in rows:
        a = f"{percentile(with_index, 0.5):.2f} / {percentile(with_index, 0.99):.2f}"
        b = f"{percentile(without, 0.5):.2f} / {percentile(without, 0.99):.2f}"
        print(f"{size:>12}  {shape:28} {a:>24} {b:>20}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench risk_activity", description=__doc__)
    parser.add_argument(
        "--orders",
        default="1000,5000,20000",
        help="the user's orders today, growing (default 1000,5000,20000)",
    )
    parser.add_argument("--reads", type=int, default=200, help="timed reads per row (default 200)")
    args = parser.parse_args(argv)
    sizes = sorted({max(1, min(int(n), 100_000)) for n in args.orders.split(",") if n.strip()})
    reads = max(10, min(args.reads, 5_000))
    if not os.environ.get("DATABASE_URL"):
        print("run under the devstack: python -m k2.devstack run --durable -- python -m bench risk_activity")
        return 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "k2.settings")
    print_table(run(sizes, reads))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
