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


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot run with."""


@dataclass(frozen=True, slots=True)
class Settings:
    # None means: start the embedded PostgreSQL in `data_dir`.
    database_url: str | None
    data_dir: Path
    host: str
    port: int
    workers: int
    default_margin: Decimal
    credits_per_usd: Decimal
    log_level: str
    db_pool_size: int
    max_body_bytes: int
    expiry_sweep_seconds: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        return cls(
            database_url=_read(env, "DATABASE_URL", None, database_url),
            data_dir=_read(env, "BILLING_DATA_DIR", PROJECT_DIR / ".data", Path),
            host=_read(env, "BILLING_HOST", "127.0.0.1", str),
            port=_read(env, "BILLING_PORT", 8000, _int_between(1, 65535)),
            workers=_read(env, "BILLING_WORKERS", 1, _int_between(1, 64)),
            default_margin=_read(env, "DEFAULT_MARGIN", Decimal("1.4"), _positive_decimal),
            credits_per_usd=_read(env, "CREDITS_PER_USD", Decimal(100), _positive_decimal),
            log_level=_read(env, "BILLING_LOG_LEVEL", "INFO", _log_level),
            db_pool_size=_read(env, "BILLING_DB_POOL_SIZE", 10, _int_between(1, 200)),
            max_body_bytes=_read(env, "BILLING_MAX_BODY_BYTES", 2 * 1024 * 1024, _int_between(1024, 1 << 30)),
            expiry_sweep_seconds=_read(env, "BILLING_EXPIRY_SWEEP_SECONDS", 5, _int_between(1, 3600)),
        )


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
