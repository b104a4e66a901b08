"""Trading choices: order lifecycle, sides, types, outcomes, kill-switch scopes and modes."""

from __future__ import annotations

from django.db import models

# Re-exported: orders record their instrument's type in market data's one vocabulary.
from apps.marketdata.choices import InstrumentType as InstrumentType


class OrderStatus(models.TextChoices):
    PENDING = "pending", "Pending (intent recorded, not sent)"
    SUBMITTED = "submitted", "Submitted (sent, no answer yet)"
    OPEN = "open", "Open"
    PARTIAL = "partial", "Partially filled"
    FILLED = "filled", "Filled"
    CANCELLED = "cancelled", "Cancelled"
    REJECTED = "rejected", "Rejected"
    UNKNOWN = "unknown", "Unknown (being reconciled)"


TERMINAL_STATUSES = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED})
# Orders whose venue state may still change: reconciliation asks the venue about these.
LIVE_STATUSES = frozenset({OrderStatus.SUBMITTED, OrderStatus.UNKNOWN, OrderStatus.OPEN, OrderStatus.PARTIAL})
# Orders whose very submission is not settled yet: reconciliation takes these first.
IN_DOUBT_STATUSES = frozenset({OrderStatus.PENDING, OrderStatus.SUBMITTED, OrderStatus.UNKNOWN})
# Orders the user can cancel (pending ones are cancelled locally, the others at the venue).
CANCELLABLE_STATUSES = frozenset({OrderStatus.PENDING, *LIVE_STATUSES})


class Side(models.TextChoices):
    BUY = "buy", "Buy"
    SELL = "sell", "Sell"


class OrderType(models.TextChoices):
    MARKET = "market", "Market"
    LIMIT = "limit", "Limit"


class TimeInForce(models.TextChoices):
    GTC = "gtc", "Good till cancelled"
    IOC = "ioc", "Immediate or cancel"
    FOK = "fok", "Fill or kill"


class Outcome(models.TextChoices):
    YES = "yes", "Yes"
    NO = "no", "No"


class Liquidity(models.TextChoices):
    MAKER = "maker", "Maker"
    TAKER = "taker", "Taker"


class KillSwitchScope(models.TextChoices):
    GLOBAL = "global", "Everyone"
    VENUE = "venue", "One venue"
    USER = "user", "One user"


class KillSwitchMode(models.TextChoices):
    HALT = "halt", "Halt: no new orders"
    REDUCE_ONLY = "reduce_only", "Reduce only: only orders that shrink a position"
