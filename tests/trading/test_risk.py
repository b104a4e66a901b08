"""The risk engine: each check refuses with its own code and details, audited, before anything
reaches the venue; kill switches flipped in admin apply to the very next order."""

from __future__ import annotations

import copy
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from apps.accounts.models import User
from apps.trading.models import KillSwitch, Order, RiskLimit
from k2.audit.models import AuditEntry
from tests.trading.conftest import Trader

pytestmark = pytest.mark.django_db


def refused(trader: Trader, code: str, **body: Any) -> dict[str, Any]:
    """Place; assert the refusal, its audit entry, and that the venue saw nothing."""
    venue_orders = trader.venue_state()["orders"]
    response = trader.place(**body)
    assert response.status_code in (403, 422, 429, 503), response.content
    error = response.json()["error"]
    assert error["code"] == code, error
    order = Order.objects.get(pk=error["details"]["order_id"])
    assert (order.status, order.error_code, order.metadata["rejected_by"]) == ("rejected", code, "risk")
    assert order.submitted_at is None
    assert (
        AuditEntry.objects.filter(action="order.risk_rejected", target_id=str(order.pk)).get().details["code"]
        == code
    )
    assert trader.venue_state()["orders"] == venue_orders
    return error["details"]


def limit(trader: Trader, **values: Any) -> RiskLimit:
    return RiskLimit.objects.create(user=trader.user, instrument_type="crypto", **values)


def buys_at_once(trader: Trader, price: Decimal, count: int) -> list[tuple[int, str]]:
    """`count` limit buys of 0.01 BTC-USD at `price`, sent at once from as many threads (through
    the API): each one's (status code, error code or ""), sorted."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections
    from rest_framework.test import APIClient

    start = threading.Barrier(count)

    def post(_: int) -> tuple[int, str]:
        client = APIClient()
        client.force_authenticate(trader.user)
        body = {"instrument": "BTC-USD", "side": "buy", "order_type": "limit", "quantity": "0.01"}
        try:
            start.wait(10)
            response = client.post("/v1/orders", {**body, "price": str(price)}, format="json")
            error = response.json().get("error")
            return response.status_code, error["code"] if error else ""
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return sorted(pool.map(post, range(count)))


def test_max_order_notional(trader: Trader) -> None:
    limit(trader, max_order_notional=Decimal("100"))
    details = refused(trader, "RISK_MAX_NOTIONAL", quantity="0.01")
    assert details["limit"] == "100"
    assert Decimal(details["attempted"]) > 100
    assert trader.place(quantity="0.001").status_code == 201


def test_daily_notional(trader: Trader) -> None:
    price = trader.below_market()
    limit(trader, max_daily_notional=price * Decimal("0.015"))
    assert trader.place(quantity="0.01", price=str(price)).status_code == 201
    details = refused(trader, "RISK_DAILY_NOTIONAL", quantity="0.01", price=str(price))
    assert Decimal(details["used"]) == price * Decimal("0.01")
    assert Decimal(details["attempted"]) == price * Decimal("0.02")


@pytest.mark.django_db(transaction=True)
def test_concurrent_orders_cannot_both_pass_a_limit_only_one_fits_in(trader: Trader) -> None:
    """One user's risk checks run one at a time, each reading what the one before committed: of
    eight orders sent at once, with room for one more under the daily limit, one goes out. Three
    rounds, the limit raised by one order's notional each time: without the lock, a single round
    let two through in about 5 runs out of 6, so three rounds miss it about once in 200."""
    price = trader.below_market()
    one_order = price * Decimal("0.01")
    risk_limit = limit(trader, max_daily_notional=one_order / 2)
    for sent in range(1, 4):
        risk_limit.max_daily_notional += one_order
        risk_limit.save(update_fields=["max_daily_notional"])
        results = buys_at_once(trader, price, 8)
        assert results == [(201, "")] + [(422, "RISK_DAILY_NOTIONAL")] * 7, (sent, results)
        assert trader.venue_state()["orders"] == sent
        assert Order.objects.filter(submitted_at__isnull=False).count() == sent


def test_velocity_per_second_and_per_minute(trader: Trader) -> None:
    limit(trader, max_orders_per_second=2, max_orders_per_minute=100)
    assert trader.place().status_code == 201
    assert trader.place().status_code == 201
    details = refused(trader, "RISK_VELOCITY")
    assert (details["window"], details["limit"], details["attempted"]) == ("1s", 2, 3)
    RiskLimit.objects.filter(user=trader.user).update(max_orders_per_second=100, max_orders_per_minute=2)
    details = refused(trader, "RISK_VELOCITY")
    assert details["window"] == "1m"


def test_fat_finger_price(trader: Trader) -> None:
    details = refused(trader, "RISK_FAT_FINGER_PRICE", side="buy", price=str(trader.below_market("1.5")))
    assert details["limit_percent"] == "10"
    assert Decimal(details["attempted_percent"]) > 40
    refused(trader, "RISK_FAT_FINGER_PRICE", side="sell", price=str(trader.below_market("0.5")))
    limit(trader, fat_finger_percent=Decimal("60"))
    assert trader.place(side="sell", price=str(trader.below_market("1.5"))).status_code == 201


def test_fat_finger_quantity(trader: Trader) -> None:
    for _ in range(5):
        assert trader.place(quantity="0.001").status_code == 201
    details = refused(trader, "RISK_FAT_FINGER_QUANTITY", quantity="0.05")
    assert (details["median"], details["limit"], details["attempted"]) == ("0.001", "0.02", "0.05")
    assert trader.place(quantity="0.02").status_code == 201


def test_max_position(trader: Trader) -> None:
    # The simulator account holds 10 BTC: ~600k USD of position already.
    limit(trader, max_position_notional=Decimal("100000"))
    details = refused(trader, "RISK_MAX_POSITION", side="buy", quantity="0.01")
    assert details["position"] == "10"
    assert (
        trader.place(side="sell", quantity="0.01", price=str(trader.below_market("1.05"))).status_code == 201
    )


def test_insufficient_balance_from_the_venue(make_trader: Any) -> None:
    trader = make_trader({"USD": "100", "BTC": "0.001"})
    details = refused(trader, "INSUFFICIENT_BALANCE", side="buy", quantity="0.01")
    assert (details["currency"], details["available"]) == ("USD", "100")
    details = refused(
        trader, "INSUFFICIENT_BALANCE", side="sell", quantity="0.01", price=str(trader.below_market("1.05"))
    )
    assert (details["currency"], details["required"], details["available"]) == ("BTC", "0.01", "0.001")


@pytest.mark.django_db(transaction=True)
def test_a_stale_balance_never_refuses_an_order(make_trader: Any, settings: Any) -> None:
    """The snapshot says too little (an order it reserved for was cancelled since); the venue
    has enough. A stale snapshot must not refuse: the venue is read again, and the order goes."""
    import time

    from apps.trading import risk

    settings.K2_TRADING_BALANCE_CACHE_SECONDS = 1
    settings.K2_TRADING_BALANCE_STALE_SECONDS = 30
    probe = make_trader()
    price = probe.below_market()
    trader = make_trader({"USD": str(price * Decimal("0.03"))})
    first = trader.place(quantity="0.02", price=str(price))
    assert first.status_code == 201, first.content
    assert trader.client.delete(f"/v1/orders/{first.json()['data']['id']}").status_code == 200
    time.sleep(1.1)  # the snapshot (with the first order's amount held) is now stale

    second = trader.place(quantity="0.02", price=str(price))
    assert second.status_code == 201, second.content
    assert not AuditEntry.objects.filter(action="order.risk_rejected").exists()
    risk.account_refresher().wait(5)


@pytest.mark.django_db(transaction=True)
def test_a_stale_balance_is_used_at_once_and_reread_in_the_background(
    make_trader: Any, settings: Any
) -> None:
    """Past its fresh window a snapshot still lets an order through without waiting for the
    venue (here the venue's balance read fails just then), and is re-read behind it."""
    import time

    from django.core.cache import cache

    from apps.trading import risk

    settings.K2_TRADING_BALANCE_CACHE_SECONDS = 1
    settings.K2_TRADING_BALANCE_STALE_SECONDS = 30
    trader = make_trader({"USD": "100000"})
    key = risk._account_keys(trader.user.exchange_links.get().pk)[0]
    assert trader.place(quantity="0.01").status_code == 201
    read_at = cache.get(key)[2]
    time.sleep(1.1)

    trader.sim.fault("http_500", count=100, method="private/user-balance")  # more than its retries
    assert trader.place(quantity="0.01").status_code == 201  # did not need the venue's balance
    risk.account_refresher().wait(10)
    [left] = trader.sim.http.get("/_sim/faults").json()["faults"]
    assert left["remaining"] < 100  # the background read met the fault (and gave up)
    assert cache.get(key)[2] == read_at  # the snapshot is as it was
    trader.sim.http.delete("/_sim/faults")

    assert trader.place(quantity="0.01").status_code == 201  # still stale: used, re-read again
    risk.account_refresher().wait(10)
    assert cache.get(key)[2] > read_at
    assert trader.place(quantity="0.01").status_code == 201  # fresh again
    assert cache.get(key)[2] > read_at


def test_limits_resolve_most_specific_first(trader: Trader, settings: Any) -> None:
    from apps.trading.risk import limits_for

    RiskLimit.objects.create(
        user=None, instrument_type="", max_order_notional=Decimal("5"), max_orders_per_second=3
    )
    RiskLimit.objects.create(user=None, instrument_type="crypto", max_order_notional=Decimal("6"))
    RiskLimit.objects.create(user=trader.user, instrument_type="", max_order_notional=Decimal("7"))
    got = limits_for(user_id=trader.user.pk, instrument_type="crypto")
    assert (got.max_order_notional, got.max_orders_per_second) == (Decimal("7"), 3)
    assert got.max_daily_notional == Decimal(settings.K2_RISK_DEFAULTS["crypto"]["max_daily_notional"])
    other = limits_for(user_id=None, instrument_type="crypto")
    assert other.max_order_notional == Decimal("6")


def test_price_unavailable_policy(trader: Trader) -> None:
    """No reference price: market orders and crossing-capable limits are refused; post-only
    limit orders (they cannot cross) skip the price check."""
    from apps.marketdata.models import Instrument
    from apps.trading import risk
    from apps.trading.exceptions import RiskRejection
    from apps.trading.services import OrderInput, _order_create

    instrument = Instrument.objects.get(symbol="BTC-USD")
    balances = risk.account_snapshot(
        link_id="t", venue="cryptocom", credentials=_credentials(trader), want_positions=False
    ).balances
    inputs = risk.RiskInputs(reference_price=None, balances=balances)

    def check(key: str, **kw: Any) -> Decimal:
        data = OrderInput(
            instrument="BTC-USD", side="buy", quantity=Decimal("0.01"), client_order_id=key, **kw
        )
        order, _ = _order_create(
            user=trader.user, data=data, instrument=instrument, fingerprint=key, actor=None
        )
        return risk.risk_check(order=order, instrument=instrument, inputs=inputs, now=timezone.now()).notional

    with pytest.raises(RiskRejection) as market:
        check("m", order_type="market")
    assert market.value.code == "PRICE_UNAVAILABLE"
    with pytest.raises(RiskRejection) as plain:
        check("l", order_type="limit", price=Decimal("100"))
    assert plain.value.code == "PRICE_UNAVAILABLE"
    assert check("p", order_type="limit", price=Decimal("100"), post_only=True) == Decimal("1")


def _credentials(trader: Trader) -> Any:
    from apps.exchanges.adapters.base import Credentials

    return Credentials(trader.account["api_key"], trader.account["api_secret"])


# ---- kill switches ----------------------------------------------------------------------------


@pytest.fixture
def admin_client(client: Any) -> Any:
    admin = User.objects.create_superuser("ops@example.com", "correct horse battery staple")
    client.force_login(admin)
    return client


def test_global_kill_switch_flipped_in_admin_stops_the_next_order(trader: Trader, admin_client: Any) -> None:
    assert trader.place().status_code == 201
    response = admin_client.post(
        "/admin/trading/killswitch/add/",
        {"scope": "global", "venue": "", "user": "", "mode": "halt", "active": "on", "reason": "incident 42"},
    )
    assert response.status_code == 302, response.content
    calls = AuditEntry.objects.filter(action="exchange.call").count()
    details = refused(trader, "TRADING_HALTED")
    assert details == {**details, "scope": "global", "reason": "incident 42"}
    assert AuditEntry.objects.filter(action="exchange.call").count() == calls  # not even a price read
    assert AuditEntry.objects.filter(action="trading.killswitch_saved").exists()

    switch = KillSwitch.objects.get()
    response = admin_client.post(
        "/admin/trading/killswitch/", {"action": "deactivate", "_selected_action": [str(switch.pk)]}
    )
    assert response.status_code == 302
    assert trader.place().status_code == 201


def test_venue_and_user_switches(trader: Trader, make_trader: Any) -> None:
    other = make_trader()
    KillSwitch.objects.create(scope="user", user=trader.user, mode="halt", reason="abuse review")
    refused(trader, "TRADING_HALTED")
    assert other.place().status_code == 201
    KillSwitch.objects.create(scope="venue", venue="cryptocom", mode="halt", reason="venue incident")
    refused(other, "TRADING_HALTED")


def test_reduce_only_lets_only_position_reducing_orders_through(trader: Trader) -> None:
    KillSwitch.objects.create(scope="venue", venue="cryptocom", mode="reduce_only", reason="wind down")
    details = refused(trader, "REDUCE_ONLY", side="buy")
    assert details["side"] == "buy"
    sell_price = str(trader.below_market("1.05"))
    details = refused(trader, "REDUCE_ONLY", side="sell", quantity="20", price=sell_price)
    assert details["position"] == "10"
    assert trader.place(side="sell", quantity="0.01", price=sell_price).status_code == 201


def test_orders_hold_their_amount_until_a_venue_read_includes_it(make_trader: Any, settings: Any) -> None:
    """Each order's amount comes off the cached venue balance for the orders after it, until a
    venue read after it includes it. Recording that never touches the snapshot or its window:
    a user trading steadily still gets fresh balances (fills, deposits)."""
    import time

    from django.core.cache import cache

    from apps.trading import risk
    from k2.core.cache import redis_client
    from tests.trading.conftest import order_of

    settings.K2_TRADING_BALANCE_CACHE_SECONDS = 3
    settings.K2_TRADING_BALANCE_STALE_SECONDS = 0  # this test is about the fresh window alone
    trader = make_trader({"USD": "100000", "BTC": "1"})
    link_id = trader.user.exchange_links.get().pk
    name = risk._account_keys(link_id)[0]
    key, redis = cache.make_and_validate_key(name), redis_client()
    buffer = 1 + Decimal(settings.K2_RISK_FEE_BUFFER_PERCENT) / 100

    def available() -> Decimal:
        """As the next order's check sees it: the snapshot less the holds since its read."""
        account = risk.account_snapshot(
            link_id=link_id, venue="cryptocom", credentials=_credentials(trader), want_positions=False
        )
        inputs = risk.RiskInputs(account=account)
        risk.account_holds_apply(inputs=inputs, link_id=link_id, submitted=[])
        assert inputs.balances is not None
        return inputs.balances["USD"].available

    first = order_of(trader.place(quantity="0.01"))  # reads the venue, then holds its amount
    snapshot = cache.get(name)
    read = snapshot[0]["USD"].available
    first_ttl = redis.pttl(key)
    assert 2000 < first_ttl <= 3000
    assert available() == read - first.notional * buffer
    time.sleep(1.1)
    second = order_of(trader.place(quantity="0.01"))  # from the cache, holds its amount too
    assert available() == read - (first.notional + second.notional) * buffer
    assert cache.get(name) == snapshot  # the snapshot itself is the venue's, untouched
    assert redis.pttl(key) <= first_ttl - 900  # its window was not restarted
    time.sleep(max(0.0, redis.pttl(key) / 1000) + 0.1)
    assert redis.pttl(key) == -2  # gone: the next order reads the venue again

    third = order_of(trader.place(quantity="0.01"))
    fresh = cache.get(name)
    assert fresh[2] > snapshot[2]
    # The venue's figure includes the first two orders; only the third is held on top of it.
    assert available() == fresh[0]["USD"].available - third.notional * buffer


@pytest.mark.django_db(transaction=True)  # the release follows the cancel's commit
def test_a_cancelled_order_frees_its_hold_so_its_replacement_fits(make_trader: Any, settings: Any) -> None:
    """Cancel and replace within the snapshot's fresh window: the cancelled order's hold no
    longer counts against the replacement."""
    from tests.trading.conftest import order_of

    settings.K2_TRADING_BALANCE_CACHE_SECONDS = 60  # one venue read for the whole test
    settings.K2_TRADING_BALANCE_STALE_SECONDS = 0
    trader = make_trader({"USD": "1000", "BTC": "0"})  # room for one 0.01 BTC buy (~620 USD), not two
    first = order_of(trader.place(quantity="0.01"))
    assert first.status == "open"
    refused(trader, "INSUFFICIENT_BALANCE", quantity="0.01")  # the first one's hold counts

    assert trader.client.delete(f"/v1/orders/{first.pk}").json()["data"]["status"] == "cancelled"
    replacement = trader.place(quantity="0.01")
    assert replacement.status_code == 201, replacement.content
    assert order_of(replacement).status == "open"
    refused(trader, "INSUFFICIENT_BALANCE", quantity="0.01")  # and the replacement's counts in turn


@pytest.mark.django_db(transaction=True)
def test_concurrent_buys_cannot_both_spend_one_balance(make_trader: Any, settings: Any) -> None:
    """Eight buys sent at once, with USD for one: one goes out, seven are refused for want of
    balance. Each order reads the others' holds under the user's risk lock, and records its own
    before letting go of it. (Read with the snapshot, before the lock, all eight read no holds
    and several went out, the venue refusing the rest.)"""
    settings.K2_TRADING_BALANCE_CACHE_SECONDS = 60
    trader = make_trader({"USD": "1000", "BTC": "0"})  # room for one 0.01 BTC buy (~620 USD)
    results = buys_at_once(trader, trader.below_market(), 8)
    assert results == [(201, "")] + [(422, "INSUFFICIENT_BALANCE")] * 7, results
    assert trader.venue_state()["orders"] == 1
    assert Order.objects.filter(submitted_at__isnull=False).count() == 1
    refusals = Order.objects.filter(status="rejected")
    assert {(o.error_code, o.metadata["rejected_by"]) for o in refusals} == {("INSUFFICIENT_BALANCE", "risk")}


def test_a_hold_the_venue_read_may_have_counted_already_does_not_refuse_an_order(
    make_trader: Any, settings: Any
) -> None:
    """A venue read under way while another order of the user is placed may answer after that
    order rested: its figures then hold the order, and its hold, recorded after the read began,
    was taken off them again. Orders the account could pay for were refused until the next read
    (seconds; after six buys at once, 128 of the next 150 small ones). A refusal resting on a
    hold recorded while the snapshot's read was under way now reads the venue again first."""
    import time

    from django.core.cache import cache

    from apps.trading import risk
    from tests.trading.conftest import order_of

    settings.K2_TRADING_BALANCE_CACHE_SECONDS = 60  # no read but the one this test asks for
    trader = make_trader({"USD": "1000", "BTC": "0"})  # room for one 0.01 BTC buy (~620 USD)
    first = order_of(trader.place(quantity="0.01"))
    assert first.status == "open"
    link_id = trader.user.exchange_links.get().pk
    (hold,) = risk._holds(link_id)
    held_at = float(hold.split(b" ")[0])
    # The venue's figures with the first order on hold, as a read begun just before its hold
    # was recorded and answered once it rested would have them.
    with_first = risk.account_snapshot(
        link_id=link_id, venue="cryptocom", credentials=_credentials(trader), want_positions=False, fresh=True
    ).balances
    name = risk._account_keys(link_id)[0]
    cache.delete_many([name, f"{name}:read_at"])
    risk._account_put(name, with_first, None, held_at - 0.005, time.time())

    def balance_reads() -> int:
        calls = AuditEntry.objects.filter(action="exchange.call")
        return calls.filter(details__method="private/user-balance").count()

    reads = balance_reads()
    second = trader.place(quantity="0.001")  # ~62 USD of the ~380 left
    assert second.status_code == 201, second.content
    assert order_of(second).status == "open"
    assert balance_reads() == reads + 1  # the venue, read again
    assert trader.venue_state()["orders"] == 2


def _btc_limit(trader: Trader, **fields: Any) -> Order:
    """An unsaved BTC-USD limit order of the trader's, at 60000."""
    return Order(
        user=trader.user,
        exchange="cryptocom",
        instrument="BTC-USD",
        instrument_type="crypto",
        order_type="limit",
        price=Decimal("60000"),
        **fields,
    )


def test_an_order_the_venue_refused_drops_its_hold(make_trader: Any, settings: Any) -> None:
    """An order that never rested at the venue held nothing there: its hold is dropped (not
    offset), so no venue read, before or after, counts it."""
    from apps.marketdata.models import Instrument
    from apps.trading import risk
    from k2.core.cache import redis_client

    trader = make_trader({"USD": "1000", "BTC": "0"})
    link_id = trader.user.exchange_links.get().pk
    btc = Instrument.objects.get(symbol="BTC-USD")
    order = _btc_limit(
        trader,
        side="buy",
        quantity=Decimal("0.01"),
        notional=Decimal("600"),
        status="submitted",
        submitted_at=timezone.now(),
    )
    other = copy.copy(order)
    other.pk = uuid.uuid4()
    for held in (order, other):
        risk.account_snapshot_reserve(link_id=link_id, order=held, instrument=btc)

    def entries() -> list[str]:
        return [e.decode() for e in redis_client().zrange(risk._holds_key(link_id), 0, -1)]

    assert len(entries()) == 2

    order.status, order.error_code = "rejected", "INSUFFICIENT_BALANCE"  # no exchange_order_id
    risk.account_hold_release(order=order)
    assert [e.split(" ")[1] for e in entries()] == [str(other.pk)]


def test_a_snapshot_counts_only_the_holds_recorded_since_its_venue_read(make_trader: Any) -> None:
    """Of a busy user's holds in the window, those from the snapshot's read time on count
    (a hold recorded at that very moment included), those before it are in the venue's figure."""
    from apps.exchanges.adapters.base import Balance
    from apps.marketdata.models import Instrument
    from apps.trading import risk

    trader = make_trader({"USD": "1000", "BTC": "0"})
    link_id = trader.user.exchange_links.get().pk
    btc = Instrument.objects.get(symbol="BTC-USD")
    order = _btc_limit(trader, side="sell", quantity=Decimal("0.001"))  # holds its quantity of BTC
    for _ in range(120):
        order.pk = uuid.uuid4()
        risk.account_snapshot_reserve(link_id=link_id, order=order, instrument=btc)
    holds = risk._holds(link_id)
    assert len(holds) == 120
    balances = {"BTC": Balance(currency="BTC", total=Decimal(1), available=Decimal(1), on_hold=Decimal(0))}
    for since in (0, 1, 57, 119):
        read_at = float(holds[since].split(b" ")[0])  # read at the moment of that hold
        left = risk._less_holds(balances, holds, read_at)["BTC"]
        assert (left.available, left.on_hold) == (
            1 - Decimal("0.001") * (120 - since),
            Decimal("0.001") * (120 - since),
        )
    assert risk._less_holds(balances, holds, read_at + 1) == balances


def test_a_balance_snapshot_is_never_replaced_by_an_older_one_even_by_concurrent_writers() -> None:
    """Venue reads and user-stream pushes cache snapshots from several threads and processes;
    whatever order their writes land in, the newest read stays (compare and write in one step)."""
    import random
    import time
    from concurrent.futures import ThreadPoolExecutor

    from django.core.cache import cache

    from apps.exchanges.adapters.base import Balance
    from apps.trading import risk

    key = f"k2:test:account:{uuid.uuid4()}"

    def put(read_at: float) -> None:
        usd = Balance(currency="USD", total=Decimal(1), available=Decimal(1), on_hold=Decimal(0))
        risk._account_put(key, {"USD": usd}, None, read_at, read_at)

    def cached_read_at() -> float:
        return cache.get(key)[2]

    now = time.time()
    put(now)
    put(now - 1)  # an older read, answered late
    assert cached_read_at() == now
    put(now + 1)
    assert cached_read_at() == now + 1

    rng = random.Random(7)
    with ThreadPoolExecutor(max_workers=8) as pool:
        for round_ in range(8):  # a read, then a write, let an older one win (4 runs in 4)
            times = [now + 2 + round_ + i / 1000 for i in range(150)]
            rng.shuffle(times)
            list(pool.map(put, times))
            assert cached_read_at() == max(times), round_
    assert cache.get(key)[0]["USD"].available == Decimal(1)


@pytest.mark.django_db(transaction=True)
def test_a_halt_flipped_while_an_order_is_being_checked_stops_it(trader: Trader) -> None:
    """The switches are read when the order is stored; one flipped while its inputs are gathered
    (a slow venue balance read here) is seen under the risk lock, before anything is sent."""
    import threading
    import time

    trader.sim.fault("latency", method="private/user-balance", latency_ms=1500)
    flipped = threading.Event()

    def flip() -> None:
        from django.db import connections

        try:
            time.sleep(0.5)  # the order is stored and waiting for its balance read
            KillSwitch.objects.create(scope="global", mode="halt", reason="incident 43")
            flipped.set()
        finally:
            connections.close_all()

    thread = threading.Thread(target=flip)
    thread.start()
    try:
        details = refused(trader, "TRADING_HALTED")
    finally:
        thread.join(10)
    assert flipped.is_set()
    assert (details["scope"], details["reason"]) == ("global", "incident 43")
