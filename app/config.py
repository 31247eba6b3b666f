"""Settings, read from the environment in one place and validated at start."""

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TypeVar

PROJECT_DIR = Path(__file__).resolve().parent.parent
T = TypeVar("T")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SYNC_SOURCES = ("openrouter", "ollama", "litellm", "genai-prices")
POOLERS = ("none", "pgbouncer")


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot run with."""


@dataclass(frozen=True, slots=True)
class Settings:
    # None means: start the embedded PostgreSQL in `data_dir`.
    database_url: str | None
    # LISTEN/NOTIFY, session advisory locks, migrations and the CLI need a session of their own on the
    # server itself, which a transaction-pooling DATABASE_URL does not give. None: DATABASE_URL.
    direct_database_url: str | None
    # A streaming replica for reports, lists and exports. None: DATABASE_URL.
    read_database_url: str | None
    # "pgbouncer": DATABASE_URL (and the read URL) is a transaction-pooling PgBouncer (docs/scale-out.md).
    database_pooler: str
    data_dir: Path
    host: str
    port: int
    workers: int
    default_margin: Decimal
    credits_per_usd: Decimal
    log_level: str
    access_log: bool  # one JSON line per request (app/observability.py)
    db_pool_size: int
    max_body_bytes: int
    expiry_sweep_seconds: float
    statement_timeout_ms: int
    rate_limit: float
    # Catalog sync from upstream sources (app/catalog/sync.py).
    openrouter_base_url: str
    openrouter_api_key: str | None
    ollama_base_url: str
    litellm_prices: str | None  # a URL or a path of a LiteLLM model_prices_and_context_window.json
    sync_sources: tuple[str, ...]
    sync_interval_seconds: int  # 0: no periodic sync
    sync_timeout_seconds: float
    sync_retries: int
    sync_max_bytes: int
    webhook_poll_seconds: float  # 0: this process sends no webhooks
    # How long before a grant expires `grant.expiring` is sent (0: never).
    grant_expiry_notice_seconds: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        return cls(
            database_url=_read(env, "DATABASE_URL", None, database_url),
            direct_database_url=_read(env, "BILLING_DIRECT_DATABASE_URL", None, database_url),
            read_database_url=_read(env, "BILLING_READ_DATABASE_URL", None, database_url),
            database_pooler=_read(env, "BILLING_DATABASE_POOLER", "none", _pooler),
            data_dir=_read(env, "BILLING_DATA_DIR", PROJECT_DIR / ".data", Path),
            host=_read(env, "BILLING_HOST", "127.0.0.1", str),
            port=_read(env, "BILLING_PORT", 8000, _int_between(1, 65535)),
            workers=_read(env, "BILLING_WORKERS", 1, _int_between(1, 64)),
            default_margin=_read(env, "DEFAULT_MARGIN", Decimal("1.4"), _positive_decimal),
            credits_per_usd=_read(env, "CREDITS_PER_USD", Decimal(100), _positive_decimal),
            log_level=_read(env, "BILLING_LOG_LEVEL", "INFO", _log_level),
            access_log=_read(env, "BILLING_ACCESS_LOG", True, _flag),
            db_pool_size=_read(env, "BILLING_DB_POOL_SIZE", 10, _int_between(1, 200)),
            max_body_bytes=_read(env, "BILLING_MAX_BODY_BYTES", 2 * 1024 * 1024, _int_between(1024, 1 << 30)),
            expiry_sweep_seconds=_read(env, "BILLING_EXPIRY_SWEEP_SECONDS", 5, _int_between(1, 3600)),
            statement_timeout_ms=_read(env, "BILLING_STATEMENT_TIMEOUT_MS", 10_000, _int_between(100, 3_600_000)),
            rate_limit=_read(env, "BILLING_RATE_LIMIT", 0, _int_between(0, 1_000_000)),
            openrouter_base_url=_read(env, "OPENROUTER_BASE_URL", "https://openrouter.ai", _http_url),
            openrouter_api_key=_read(env, "OPENROUTER_API_KEY", None, str),
            ollama_base_url=_read(env, "OLLAMA_BASE_URL", "http://127.0.0.1:11434", _http_url),
            litellm_prices=_read(env, "LITELLM_PRICES", None, str),
            sync_sources=_read(env, "BILLING_SYNC_SOURCES", ("openrouter", "ollama"), _sync_sources),
            sync_interval_seconds=_read(env, "BILLING_SYNC_INTERVAL_SECONDS", 0, _sync_interval),
            sync_timeout_seconds=_read(env, "BILLING_SYNC_TIMEOUT_SECONDS", 30.0, _seconds_between(0.1, 600)),
            sync_retries=_read(env, "BILLING_SYNC_RETRIES", 2, _int_between(0, 10)),
            sync_max_bytes=_read(env, "BILLING_SYNC_MAX_BYTES", 32 * 1024 * 1024, _int_between(1024, 1 << 31)),
            webhook_poll_seconds=_read(env, "BILLING_WEBHOOK_POLL_SECONDS", 1.0, _seconds_between(0, 60)),
            grant_expiry_notice_seconds=_read(
                env, "BILLING_GRANT_EXPIRY_NOTICE_SECONDS", 3 * 86400, _int_between(0, 366 * 86400)
            ),
        )

    @property
    def direct_url(self) -> str | None:
        return self.direct_database_url or self.database_url

    @property
    def pooled(self) -> bool:
        return self.database_pooler != "none"


def _read(env: Mapping[str, str], name: str, default: T, parse: Callable[[str], T]) -> T:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse(raw)
    except (ValueError, InvalidOperation) as exc:
        raise SettingsError(f"invalid {name}={raw!r}: {exc}") from None


def database_url(raw: str) -> str:
    """Accept the usual postgres:// spellings and select the asyncpg driver."""
    for scheme in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if raw.startswith(scheme):
            return "postgresql+asyncpg://" + raw[len(scheme) :]
    raise ValueError("expected a postgresql:// URL")


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _positive_decimal(raw: str) -> Decimal:
    value = Decimal(raw)
    if not value.is_finite() or value <= 0:
        raise ValueError("must be a positive decimal number")
    return value


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return level


def _pooler(raw: str) -> str:
    value = raw.lower()
    if value not in POOLERS:
        raise ValueError(f"must be one of {', '.join(POOLERS)}")
    return value


def _flag(raw: str) -> bool:
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected 1 or 0 (true/false, yes/no, on/off)")


def _http_url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")) or len(raw.split("://", 1)[1].strip("/")) == 0:
        raise ValueError("expected an http:// or https:// URL")
    return raw.rstrip("/")


def _sync_sources(raw: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(name.strip() for name in raw.split(",") if name.strip()))
    unknown = [name for name in names if name not in SYNC_SOURCES]
    if not names or unknown:
        raise ValueError(f"expected a comma-separated list of {', '.join(SYNC_SOURCES)}")
    return names


def _sync_interval(raw: str) -> int:
    value = int(raw)
    # Upstream catalogs change a few times a day; polling faster only spends their rate limits.
    if value != 0 and not 60 <= value <= 7 * 86400:
        raise ValueError("must be 0 (off) or between 60 and 604800 seconds")
    return value


def _seconds_between(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)
        if not low <= value <= high:  # also refuses NaN
            raise ValueError(f"must be between {low:g} and {high:g} seconds")
        return value

    return parse
