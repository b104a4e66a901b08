"""K2 settings: every value comes from the environment (12-factor).

`K2_ENV` selects the mode: `development` (default), `test` or `production`. Environments differ
by variables, not code; the README and `.env.example` list every variable with its default.
In development, `var/devstack.env` (written by `make run`, holding the local servers' URLs and
generated dev secrets) and `.env` are read when present; real environment variables win.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("K2_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()
K2_ENV = env.str("K2_ENV", default="development")
if K2_ENV not in {"development", "test", "production"}:
    raise ImproperlyConfigured(f"K2_ENV must be development, test or production, not {K2_ENV!r}")
IS_PRODUCTION = K2_ENV == "production"

if not IS_PRODUCTION:
    # Real environment variables take precedence over both files (read_env never overrides).
    for dotenv in (BASE_DIR / ".env", VAR_DIR / "devstack.env"):
        if dotenv.is_file():
            environ.Env.read_env(str(dotenv), overwrite=False)


def _required(name: str) -> str:
    """A secret production refuses to start without (and development must be given)."""
    value = env.str(name, default="")
    if not value:
        raise ImproperlyConfigured(
            f"{name} is not set. In development run `make run` (it generates local secrets into "
            f"var/devstack.env); in production it must come from the environment."
        )
    return value


# --- Core -----------------------------------------------------------------------------------
SECRET_KEY = _required("DJANGO_SECRET_KEY")
DEBUG = env.bool("DJANGO_DEBUG", default=False)  # on: Django debug pages instead of JSON errors
if IS_PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DJANGO_DEBUG must be off in production")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
CSRF_FAILURE_VIEW = "k2.api.views.csrf_failure"
K2_SERVICE_NAME = env.str("K2_SERVICE_NAME", default="k2")
K2_PUBLIC_URL = env.str("K2_PUBLIC_URL", default=f"http://127.0.0.1:{env.int('PORT', default=8000)}")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_otp",
    "k2.audit",
    "k2.vault",
    "k2.core",
    "apps.accounts",
    "apps.exchanges",
    "apps.trading",
    "apps.portfolio",
    "apps.marketdata",
    "apps.notifications",
    "apps.alerts",
]

MIDDLEWARE = [
    "k2.observability.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "k2.api.middleware.RequestLimitsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "k2.audit.middleware.AuditRequestMiddleware",
]

ROOT_URLCONF = "k2.urls"
WSGI_APPLICATION = "k2.wsgi.application"
ASGI_APPLICATION = "k2.asgi.application"
AUTH_USER_MODEL = "accounts.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# --- Data stores ------------------------------------------------------------------------------
DATABASES = {"default": env.db_url("DATABASE_URL", default="")}
if not DATABASES["default"].get("NAME"):
    raise ImproperlyConfigured(
        "DATABASE_URL is not set. `make run` starts a local PostgreSQL and sets it for you."
    )
DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env.int(
    "DATABASE_CONNECT_TIMEOUT", default=5
)
# Under Django's ASGI handler every request runs its sync code in a fresh thread, so per-thread
# persistent connections (CONN_MAX_AGE) are never reused; K2's handler (k2/handlers.py) reuses a
# bounded set of threads, but a connection per thread idles between that thread's requests. The
# web process (Procfile) therefore uses a psycopg pool shared by all its threads; a connection is
# checked before it is handed out and goes back when the request ends. Other processes keep
# per-thread connections: a thread that never ends its "request" would hold a pooled one forever.
# The Procfile's Celery worker, market-data feed and user streams keep theirs between tasks,
# writes and events (DATABASE_CONN_MAX_AGE=600): with 0 every task, every batch of trades or
# candles the feed wrote (several a second) and every stream event opened a connection, and the
# server forked a backend process for it.
DATABASE_POOL_MAX_SIZE = env.int("DATABASE_POOL_MAX_SIZE", default=0)
# K2's backend (k2/db/base.py) is Django's, except that it checks pooled connections itself,
# without a round trip to the server for each one; Django's health checks cover the rest.
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["ENGINE"] = "k2.db"
DATABASES["default"]["CONN_HEALTH_CHECKS"] = DATABASE_POOL_MAX_SIZE <= 0
DATABASE_POOL_OPTIONS = {
    "min_size": min(env.int("DATABASE_POOL_MIN_SIZE", default=2), max(DATABASE_POOL_MAX_SIZE, 1)),
    "max_size": max(DATABASE_POOL_MAX_SIZE, 1),
    "timeout": env.float("DATABASE_POOL_TIMEOUT", default=10.0),
    "max_idle": 300,
}
if DATABASE_POOL_MAX_SIZE > 0:
    DATABASES["default"]["OPTIONS"]["pool"] = DATABASE_POOL_OPTIONS
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=0)
# Parameters bound by the server (not quoted into the SQL by Python), and a statement run this
# many times on a connection is prepared there: both save work on every query. Behind a pooler
# that cannot keep prepared statements (pgbouncer < 1.21 in transaction mode) set -1 (never).
DATABASES["default"]["OPTIONS"]["server_side_binding"] = env.bool(
    "DATABASE_SERVER_SIDE_BINDING", default=True
)
_prepare_threshold = env.int("DATABASE_PREPARE_THRESHOLD", default=2)
DATABASES["default"]["OPTIONS"]["prepare_threshold"] = _prepare_threshold if _prepare_threshold >= 0 else None

REDIS_URL = env.str("REDIS_URL", default="")
if not REDIS_URL:
    raise ImproperlyConfigured("REDIS_URL is not set. `make run` starts a local Redis and sets it.")


def _redis_db(url: str, db: int) -> str:
    """The same Redis server, another logical database (cache, broker and channels kept apart)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


CACHES = {
    "default": {
        "BACKEND": "k2.core.cache.SharedPoolRedisCache",
        "LOCATION": env.str("CACHE_REDIS_URL", default=_redis_db(REDIS_URL, 0)),
        "KEY_PREFIX": "k2",
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [env.str("CHANNELS_REDIS_URL", default=_redis_db(REDIS_URL, 2))],
            "prefix": "k2:asgi",
        },
    }
}

# --- Celery -----------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=_redis_db(REDIS_URL, 1))
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fixup closes every database connection before and after each task unless this
# is set (then only every this many tasks); k2/celery.py closes them between tasks as Django does
# between requests instead: per CONN_MAX_AGE, after errors, and when the health check fails.
CELERY_DB_REUSE_MAX = 1000
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "audit-seal": {
        "task": "k2.audit.tasks.audit_seal_task",
        "schedule": timedelta(seconds=env.int("K2_AUDIT_SEAL_INTERVAL", default=30)),
        "options": {"expires": env.int("K2_AUDIT_SEAL_INTERVAL", default=30)},
    },
    "audit-archive": {
        "task": "k2.audit.tasks.audit_archive_task",
        "schedule": timedelta(minutes=env.int("K2_AUDIT_ARCHIVE_INTERVAL_MINUTES", default=60)),
        "options": {"expires": 60 * env.int("K2_AUDIT_ARCHIVE_INTERVAL_MINUTES", default=60)},
    },
}

# --- Auth -------------------------------------------------------------------------------------
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": env.int("K2_PASSWORD_MIN_LENGTH", default=12)},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- i18n / time ------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files (admin, API docs) -----------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = not IS_PRODUCTION
WHITENOISE_AUTOREFRESH = DEBUG

# --- API --------------------------------------------------------------------------------------
K2_REQUEST_MAX_BODY_BYTES = env.int("K2_REQUEST_MAX_BODY_BYTES", default=1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = K2_REQUEST_MAX_BODY_BYTES
REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["k2.api.renderers.EnvelopeJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.authentication.JWTAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": [
        "k2.api.throttling.AnonRateThrottle",
        "k2.api.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("API_THROTTLE_ANON", default="120/min"),
        "user": env.str("API_THROTTLE_USER", default="1200/min"),
        "auth": env.str("API_THROTTLE_AUTH", default="60/min"),
        "auth_email": env.str("API_THROTTLE_AUTH_EMAIL", default="10/min"),
    },
    "DEFAULT_PAGINATION_CLASS": "k2.api.pagination.EnvelopeCursorPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "k2.api.filters.SortFilter",
    ],
    "EXCEPTION_HANDLER": "k2.api.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DATETIME_FORMAT": "iso-8601",
    "COERCE_DECIMAL_TO_STRING": True,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "NUM_PROXIES": env.int("K2_NUM_PROXIES", default=0),
}
K2_PAGINATION_MAX_LIMIT = env.int("K2_PAGINATION_MAX_LIMIT", default=100)
SPECTACULAR_SETTINGS = {
    "TITLE": "K2 API",
    "DESCRIPTION": "One backend for Crypto.com Exchange (spot) and Kalshi (event contracts).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/v1",
    # Several apps expose an `instrument_type`; name each distinct choice set once.
    "ENUM_NAME_OVERRIDES": {
        "InstrumentTypeEnum": "apps.marketdata.choices.InstrumentType",
        "PositionInstrumentTypeEnum": ["crypto", "event"],
        "AllocationInstrumentTypeEnum": ["cash", "crypto", "event"],
    },
}

# --- Secret vault -----------------------------------------------------------------------------
K2_VAULT_PROVIDER = env.str("K2_VAULT_PROVIDER", default="local")
K2_VAULT_MASTER_KEYS = env.str("K2_VAULT_MASTER_KEYS", default="")
K2_VAULT_ACTIVE_KEY_ID = env.str("K2_VAULT_ACTIVE_KEY_ID", default="")
K2_VAULT_KMS_KEY_ID = env.str("K2_VAULT_KMS_KEY_ID", default="")
K2_VAULT_KMS_ENDPOINT_URL = env.str("K2_VAULT_KMS_ENDPOINT_URL", default="") or None
AWS_REGION = env.str("AWS_REGION", default="us-east-1")
if K2_VAULT_PROVIDER not in {"local", "aws-kms"}:
    raise ImproperlyConfigured("K2_VAULT_PROVIDER must be 'local' or 'aws-kms'")
if K2_VAULT_PROVIDER == "local" and not K2_VAULT_MASTER_KEYS:
    _required("K2_VAULT_MASTER_KEYS")
if K2_VAULT_PROVIDER == "aws-kms" and not K2_VAULT_KMS_KEY_ID:
    _required("K2_VAULT_KMS_KEY_ID")

# --- Audit log --------------------------------------------------------------------------------
K2_AUDIT_ARCHIVE_BACKEND = env.str("K2_AUDIT_ARCHIVE_BACKEND", default="local")
K2_AUDIT_ARCHIVE_DIR = env.str("K2_AUDIT_ARCHIVE_DIR", default=str(VAR_DIR / "audit-archive"))
K2_AUDIT_ARCHIVE_S3_BUCKET = env.str("K2_AUDIT_ARCHIVE_S3_BUCKET", default="")
K2_AUDIT_ARCHIVE_S3_ENDPOINT_URL = env.str("K2_AUDIT_ARCHIVE_S3_ENDPOINT_URL", default="") or None
K2_AUDIT_ARCHIVE_RETENTION_DAYS = env.int("K2_AUDIT_ARCHIVE_RETENTION_DAYS", default=2555)
K2_AUDIT_ARCHIVE_LOCK_MODE = env.str("K2_AUDIT_ARCHIVE_LOCK_MODE", default="COMPLIANCE")
if K2_AUDIT_ARCHIVE_BACKEND == "s3":
    STORAGES["audit_archive"] = {
        "BACKEND": "k2.audit.storage.ObjectLockS3Storage",
        "OPTIONS": {
            "bucket_name": K2_AUDIT_ARCHIVE_S3_BUCKET or _required("K2_AUDIT_ARCHIVE_S3_BUCKET"),
            "endpoint_url": K2_AUDIT_ARCHIVE_S3_ENDPOINT_URL,
            "region_name": AWS_REGION,
            "file_overwrite": False,
            "default_acl": None,
        },
    }
elif K2_AUDIT_ARCHIVE_BACKEND == "local":
    STORAGES["audit_archive"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": K2_AUDIT_ARCHIVE_DIR, "file_permissions_mode": 0o440},
    }
else:
    raise ImproperlyConfigured("K2_AUDIT_ARCHIVE_BACKEND must be 'local' or 's3'")

# --- Exchanges (apps.exchanges) ---------------------------------------------------------------
# Base URLs are configuration: the defaults are the local simulators that `make run` starts.
K2_CRYPTOCOM_REST_URL = env.str("K2_CRYPTOCOM_REST_URL", default="http://127.0.0.1:8601/exchange/v1")
K2_CRYPTOCOM_MARKET_WS_URL = env.str(
    "K2_CRYPTOCOM_MARKET_WS_URL", default="ws://127.0.0.1:8601/exchange/v1/market"
)
K2_CRYPTOCOM_USER_WS_URL = env.str("K2_CRYPTOCOM_USER_WS_URL", default="ws://127.0.0.1:8601/exchange/v1/user")
K2_KALSHI_REST_URL = env.str("K2_KALSHI_REST_URL", default="http://127.0.0.1:8602/trade-api/v2")
K2_KALSHI_WS_URL = env.str("K2_KALSHI_WS_URL", default="ws://127.0.0.1:8602/trade-api/ws/v2")
K2_EXCHANGE_LINK_STATE_TTL_SECONDS = env.int("K2_EXCHANGE_LINK_STATE_TTL_SECONDS", default=600)
K2_EXCHANGE_LINK_CHECK_TIMEOUT_SECONDS = env.float("K2_EXCHANGE_LINK_CHECK_TIMEOUT_SECONDS", default=10.0)
K2_EXCHANGE_LINK_CHECK_INTERVAL_MINUTES = env.int("K2_EXCHANGE_LINK_CHECK_INTERVAL_MINUTES", default=30)
CELERY_BEAT_SCHEDULE["exchange-links-check"] = {
    "task": "apps.exchanges.tasks.exchange_links_check_task",
    "schedule": timedelta(minutes=K2_EXCHANGE_LINK_CHECK_INTERVAL_MINUTES),
    "options": {"expires": 60 * K2_EXCHANGE_LINK_CHECK_INTERVAL_MINUTES},
}

# --- Market data (apps.marketdata) -----------------------------------------------------------
# Latest prices, feed leases and the price fan-out live in Redis (pub/sub is server-wide).
K2_MARKETDATA_REDIS_URL = env.str("K2_MARKETDATA_REDIS_URL", default=_redis_db(REDIS_URL, 3))
K2_MARKETDATA_LEASE_SECONDS = env.float("K2_MARKETDATA_LEASE_SECONDS", default=10.0)
K2_MARKETDATA_BOOK_DEPTH = env.int("K2_MARKETDATA_BOOK_DEPTH", default=10)
K2_MARKETDATA_FEED_MAX_INSTRUMENTS = env.int("K2_MARKETDATA_FEED_MAX_INSTRUMENTS", default=500)
K2_MARKETDATA_BACKFILL_CANDLES = env.int("K2_MARKETDATA_BACKFILL_CANDLES", default=120)
K2_MARKETDATA_VENUE_TIMEOUT_SECONDS = env.float("K2_MARKETDATA_VENUE_TIMEOUT_SECONDS", default=15.0)
K2_MARKETDATA_TRADE_RETENTION_HOURS = env.int("K2_MARKETDATA_TRADE_RETENTION_HOURS", default=48)
K2_MARKETDATA_MAX_CANDLES = env.int("K2_MARKETDATA_MAX_CANDLES", default=1000)
K2_MARKETDATA_INSTRUMENT_SYNC_MINUTES = env.int("K2_MARKETDATA_INSTRUMENT_SYNC_MINUTES", default=60)
# Venues whose market streams are signed (Kalshi) need a K2 API key for the feed:
# {"kalshi": {"api_key": "<key id>", "api_secret_file": "/run/secrets/kalshi.pem"}}
# ("api_secret" inline also works)
K2_MARKETDATA_FEED_CREDENTIALS = env.json("K2_MARKETDATA_FEED_CREDENTIALS", default={})
# Development only (make run sets it): venues whose local simulator hands the feed its own key.
K2_MARKETDATA_FEED_SIMULATOR_ACCOUNTS = env.list("K2_MARKETDATA_FEED_SIMULATOR_ACCOUNTS", default=[])
if IS_PRODUCTION and K2_MARKETDATA_FEED_SIMULATOR_ACCOUNTS:
    raise ImproperlyConfigured("K2_MARKETDATA_FEED_SIMULATOR_ACCOUNTS is for local simulators only")
K2_WS_ALLOWED_ORIGINS = env.list("K2_WS_ALLOWED_ORIGINS", default=[K2_PUBLIC_URL])
K2_WS_ALLOW_NO_ORIGIN = env.bool("K2_WS_ALLOW_NO_ORIGIN", default=True)
K2_WS_AUTH_TIMEOUT_SECONDS = env.float("K2_WS_AUTH_TIMEOUT_SECONDS", default=10.0)
K2_WS_MAX_SUBSCRIPTIONS = env.int("K2_WS_MAX_SUBSCRIPTIONS", default=100)
K2_WS_MAX_UPDATES_PER_SECOND = env.float("K2_WS_MAX_UPDATES_PER_SECOND", default=4.0)
K2_WS_HEARTBEAT_SECONDS = env.float("K2_WS_HEARTBEAT_SECONDS", default=15.0)
K2_WS_SEND_TIMEOUT_SECONDS = env.float("K2_WS_SEND_TIMEOUT_SECONDS", default=10.0)
K2_WS_MAX_QUEUED_MESSAGES = env.int("K2_WS_MAX_QUEUED_MESSAGES", default=256)
K2_WATCHLIST_MAX_LISTS = env.int("K2_WATCHLIST_MAX_LISTS", default=20)
K2_WATCHLIST_MAX_ITEMS = env.int("K2_WATCHLIST_MAX_ITEMS", default=100)
CELERY_BEAT_SCHEDULE["marketdata-instruments-sync"] = {
    "task": "apps.marketdata.tasks.instruments_sync_task",
    "schedule": timedelta(minutes=K2_MARKETDATA_INSTRUMENT_SYNC_MINUTES),
    "options": {"expires": 60 * K2_MARKETDATA_INSTRUMENT_SYNC_MINUTES},
}
CELERY_BEAT_SCHEDULE["marketdata-trades-prune"] = {
    "task": "apps.marketdata.tasks.market_trades_prune_task",
    "schedule": timedelta(hours=1),
    "options": {"expires": 3600},
}

# --- Trading (apps.trading) --------------------------------------------------------------------
# Timeouts bound every venue call an order request makes; reconciliation settles what they leave open.
K2_TRADING_SUBMIT_TIMEOUT_SECONDS = env.float("K2_TRADING_SUBMIT_TIMEOUT_SECONDS", default=10.0)
K2_TRADING_VENUE_TIMEOUT_SECONDS = env.float("K2_TRADING_VENUE_TIMEOUT_SECONDS", default=5.0)
K2_TRADING_PRICE_CACHE_SECONDS = env.float("K2_TRADING_PRICE_CACHE_SECONDS", default=2.0)
K2_TRADING_BALANCE_CACHE_SECONDS = env.float("K2_TRADING_BALANCE_CACHE_SECONDS", default=2.0)
K2_TRADING_BALANCE_STALE_SECONDS = env.float("K2_TRADING_BALANCE_STALE_SECONDS", default=10.0)
K2_TRADING_RECONCILE_INTERVAL_SECONDS = env.int("K2_TRADING_RECONCILE_INTERVAL_SECONDS", default=30)
K2_TRADING_RECONCILE_GRACE_SECONDS = env.int("K2_TRADING_RECONCILE_GRACE_SECONDS", default=60)
K2_TRADING_RECONCILE_BATCH = env.int("K2_TRADING_RECONCILE_BATCH", default=500)
K2_TRADING_UNKNOWN_FIRST_CHECK_SECONDS = env.float("K2_TRADING_UNKNOWN_FIRST_CHECK_SECONDS", default=2.0)
K2_TRADING_STREAM_REFRESH_SECONDS = env.float("K2_TRADING_STREAM_REFRESH_SECONDS", default=30.0)
K2_TRADING_CANCEL_ALL_MAX = env.int("K2_TRADING_CANCEL_ALL_MAX", default=200)
# Risk defaults; rows in admin (Trading > Risk limits) override them per user / instrument type.
K2_RISK_MAX_ORDERS_PER_SECOND = env.int("K2_RISK_MAX_ORDERS_PER_SECOND", default=10)
K2_RISK_MAX_ORDERS_PER_MINUTE = env.int("K2_RISK_MAX_ORDERS_PER_MINUTE", default=120)
K2_RISK_FAT_FINGER_QUANTITY_MULTIPLE = env.str("K2_RISK_FAT_FINGER_QUANTITY_MULTIPLE", default="20")
K2_RISK_FAT_FINGER_QUANTITY_MIN_HISTORY = env.int("K2_RISK_FAT_FINGER_QUANTITY_MIN_HISTORY", default=5)
K2_RISK_FAT_FINGER_QUANTITY_HISTORY = env.int("K2_RISK_FAT_FINGER_QUANTITY_HISTORY", default=20)
K2_RISK_FEE_BUFFER_PERCENT = env.str("K2_RISK_FEE_BUFFER_PERCENT", default="1")
K2_RISK_FAT_FINGER_PERCENT = env.str("K2_RISK_FAT_FINGER_PERCENT", default="10")
K2_RISK_FAT_FINGER_CENTS = env.str("K2_RISK_FAT_FINGER_CENTS", default="25")
K2_RISK_DEFAULTS: dict[str, dict[str, str | int]] = {
    "crypto": {
        "max_order_notional": env.str("K2_RISK_CRYPTO_MAX_ORDER_NOTIONAL", default="250000"),
        "max_daily_notional": env.str("K2_RISK_CRYPTO_MAX_DAILY_NOTIONAL", default="1000000"),
        "max_position_notional": env.str("K2_RISK_CRYPTO_MAX_POSITION_NOTIONAL", default="1000000"),
    },
    "event": {
        "max_order_notional": env.str("K2_RISK_EVENT_MAX_ORDER_NOTIONAL", default="10000"),
        "max_daily_notional": env.str("K2_RISK_EVENT_MAX_DAILY_NOTIONAL", default="50000"),
        "max_position_notional": env.str("K2_RISK_EVENT_MAX_POSITION_NOTIONAL", default="50000"),
    },
}
for _limits in K2_RISK_DEFAULTS.values():
    _limits.update(
        max_orders_per_second=K2_RISK_MAX_ORDERS_PER_SECOND,
        max_orders_per_minute=K2_RISK_MAX_ORDERS_PER_MINUTE,
        fat_finger_percent=K2_RISK_FAT_FINGER_PERCENT,
        fat_finger_cents=K2_RISK_FAT_FINGER_CENTS,
        fat_finger_quantity_multiple=K2_RISK_FAT_FINGER_QUANTITY_MULTIPLE,
    )
CELERY_BEAT_SCHEDULE["trading-orders-reconcile"] = {
    "task": "apps.trading.tasks.orders_reconcile_task",
    "schedule": timedelta(seconds=K2_TRADING_RECONCILE_INTERVAL_SECONDS),
    "options": {"expires": K2_TRADING_RECONCILE_INTERVAL_SECONDS},
}

# --- Portfolio (apps.portfolio) ---------------------------------------------------------------
# Read-only: balances and positions come from the venues, cached briefly in Redis, never stored.
K2_PORTFOLIO_VENUE_TIMEOUT_SECONDS = env.float("K2_PORTFOLIO_VENUE_TIMEOUT_SECONDS", default=3.0)
K2_PORTFOLIO_CACHE_SECONDS = env.float("K2_PORTFOLIO_CACHE_SECONDS", default=5.0)
K2_PORTFOLIO_STALE_SECONDS = env.float("K2_PORTFOLIO_STALE_SECONDS", default=300.0)
K2_PORTFOLIO_USD_PAR_CURRENCIES = env.list("K2_PORTFOLIO_USD_PAR_CURRENCIES", default=["USD", "USDT", "USDC"])
K2_PORTFOLIO_PNL_METHOD = env.str("K2_PORTFOLIO_PNL_METHOD", default="average")

# --- Demo data --------------------------------------------------------------------------------
K2_DEMO_PASSWORD = env.str("K2_DEMO_PASSWORD", default="k2-demo-Passw0rd!")

# --- Accounts & auth (apps.accounts) -----------------------------------------------------------
# JWTs are signed with keys kept (vault-encrypted) in the jwt_signing_keys table; see
# apps/accounts/tokens.py. Lifetimes follow the architecture: access 15 min, refresh 7 days.
K2_JWT_ALGORITHM = env.str("K2_JWT_ALGORITHM", default="ES256")
K2_JWT_ISSUER = env.str("K2_JWT_ISSUER", default="k2")
K2_JWT_AUDIENCE = env.str("K2_JWT_AUDIENCE", default="k2-api")
K2_JWT_ACCESS_TOKEN_LIFETIME = timedelta(seconds=env.int("K2_JWT_ACCESS_TOKEN_SECONDS", default=15 * 60))
K2_JWT_REFRESH_TOKEN_LIFETIME = timedelta(
    seconds=env.int("K2_JWT_REFRESH_TOKEN_SECONDS", default=7 * 24 * 3600)
)
K2_JWT_CHALLENGE_TOKEN_LIFETIME = timedelta(seconds=env.int("K2_JWT_CHALLENGE_TOKEN_SECONDS", default=300))
K2_JWT_LEEWAY_SECONDS = env.int("K2_JWT_LEEWAY_SECONDS", default=10)
K2_JWT_KEYSET_CACHE_SECONDS = env.int("K2_JWT_KEYSET_CACHE_SECONDS", default=60)
K2_JWT_KEY_OVERLAP = timedelta(
    seconds=env.int("K2_JWT_KEY_OVERLAP_SECONDS", default=int(K2_JWT_REFRESH_TOKEN_LIFETIME.total_seconds()))
)
K2_PASSWORD_MAX_LENGTH = env.int("K2_PASSWORD_MAX_LENGTH", default=256)
K2_EMAIL_VERIFICATION_TTL = timedelta(seconds=env.int("K2_EMAIL_VERIFICATION_TTL_SECONDS", default=48 * 3600))
K2_PASSWORD_RESET_TTL = timedelta(seconds=env.int("K2_PASSWORD_RESET_TTL_SECONDS", default=3600))
K2_VERIFY_EMAIL_URL = env.str("K2_VERIFY_EMAIL_URL", default=f"{K2_PUBLIC_URL}/verify-email?token={{token}}")
K2_PASSWORD_RESET_URL = env.str(
    "K2_PASSWORD_RESET_URL", default=f"{K2_PUBLIC_URL}/reset-password?token={{token}}"
)
K2_LOGIN_FAILURE_WINDOW_SECONDS = env.int("K2_LOGIN_FAILURE_WINDOW_SECONDS", default=900)
K2_LOGIN_MAX_FAILURES_PER_ACCOUNT = env.int("K2_LOGIN_MAX_FAILURES_PER_ACCOUNT", default=5)
K2_LOGIN_MAX_FAILURES_PER_IP = env.int("K2_LOGIN_MAX_FAILURES_PER_IP", default=20)
K2_TOTP_ISSUER = env.str("K2_TOTP_ISSUER", default="K2")
K2_TOTP_TOLERANCE = env.int("K2_TOTP_TOLERANCE", default=1)
K2_TOTP_THROTTLE_FACTOR = env.int("K2_TOTP_THROTTLE_FACTOR", default=1)
K2_TOTP_MAX_FAILURES = env.int("K2_TOTP_MAX_FAILURES", default=5)
K2_TOTP_FAILURE_WINDOW_SECONDS = env.int("K2_TOTP_FAILURE_WINDOW_SECONDS", default=300)
K2_RECOVERY_CODE_COUNT = env.int("K2_RECOVERY_CODE_COUNT", default=10)
K2_OAUTH_GOOGLE_CLIENT_IDS = env.list("K2_OAUTH_GOOGLE_CLIENT_IDS", default=[])
K2_OAUTH_GOOGLE_JWKS_URL = env.str(
    "K2_OAUTH_GOOGLE_JWKS_URL", default="https://www.googleapis.com/oauth2/v3/certs"
)
K2_OAUTH_GOOGLE_ISSUERS = env.list(
    "K2_OAUTH_GOOGLE_ISSUERS", default=["https://accounts.google.com", "accounts.google.com"]
)
K2_OAUTH_APPLE_CLIENT_IDS = env.list("K2_OAUTH_APPLE_CLIENT_IDS", default=[])
K2_OAUTH_APPLE_JWKS_URL = env.str("K2_OAUTH_APPLE_JWKS_URL", default="https://appleid.apple.com/auth/keys")
K2_OAUTH_APPLE_ISSUERS = env.list("K2_OAUTH_APPLE_ISSUERS", default=["https://appleid.apple.com"])
K2_OAUTH_JWKS_CACHE_SECONDS = env.int("K2_OAUTH_JWKS_CACHE_SECONDS", default=3600)
K2_OAUTH_HTTP_TIMEOUT_SECONDS = env.float("K2_OAUTH_HTTP_TIMEOUT_SECONDS", default=5.0)
K2_OAUTH_REQUIRE_NONCE = env.bool("K2_OAUTH_REQUIRE_NONCE", default=True)
OTP_TOTP_ISSUER = K2_TOTP_ISSUER
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="K2 <no-reply@k2.local>")

# --- Security ---------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if IS_PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or SECRET_KEY.startswith("django-insecure"):
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is too weak for production (50+ chars)")

# --- Logging and errors -----------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOG_FORMAT = env.str("LOG_FORMAT", default="json")  # json | console
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "structured": {
            "()": "structlog.stdlib.ProcessorFormatter",
            "processors": "ext://k2.observability.logging.formatter_processors",
            "foreign_pre_chain": "ext://k2.observability.logging.shared_processors",
        }
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "ERROR"},  # our exception handler logs 5xx itself
        "django.server": {"level": "WARNING"},
        "uvicorn.access": {"level": "WARNING"},  # the audit log records every request
        "httpx": {"level": "WARNING"},  # every venue request is audited (exchange.call)
        "celery": {"level": LOG_LEVEL},
    },
}

SENTRY_DSN = env.str("SENTRY_DSN", default="")
if SENTRY_DSN:
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=SENTRY_DSN,
        environment=env.str("SENTRY_ENVIRONMENT", default=K2_ENV),
        traces_sample_rate=env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0),
        send_default_pii=False,
        include_local_variables=False,  # a frame's locals may hold a secret being sealed
        integrations=[DjangoIntegration(), CeleryIntegration()],
    )

if K2_ENV == "test":
    INSTALLED_APPS.append("tests.testapp")  # test-only models (e.g. a vault field sample)

from k2.observability.logging import configure_structlog  # noqa: E402

configure_structlog(LOG_FORMAT)
