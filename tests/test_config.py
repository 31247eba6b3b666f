from decimal import Decimal
from pathlib import Path

import pytest

from app import db
from app.config import Settings, SettingsError


def test_defaults():
    settings = Settings.from_env({})
    assert settings.database_url is None
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.1", 8000, 1)
    assert settings.default_margin == Decimal("1.4")
    assert settings.credits_per_usd == Decimal(100)
    assert settings.access_log is True


@pytest.mark.parametrize(("value", "on"), [("0", False), ("off", False), ("false", False), ("1", True), ("Yes", True)])
def test_access_log_switch(value, on):
    assert Settings.from_env({"BILLING_ACCESS_LOG": value}).access_log is on


def test_values_are_read_exactly():
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgres://u:p@db:5433/billing",
            "BILLING_PORT": "9000",
            "BILLING_WORKERS": "4",
            "DEFAULT_MARGIN": "1.25",
            "CREDITS_PER_USD": "1000",
            "BILLING_LOG_LEVEL": "debug",
            "BILLING_DATA_DIR": "/tmp/x",
        }
    )
    assert settings.database_url == "postgresql+asyncpg://u:p@db:5433/billing"
    assert (settings.port, settings.workers, settings.log_level) == (9000, 4, "DEBUG")
    assert settings.default_margin == Decimal("1.25") and settings.credits_per_usd == Decimal(1000)
    assert settings.data_dir == Path("/tmp/x")


def test_database_urls():
    """The direct URL falls back to DATABASE_URL; the read URL stays unset (the app reads from DATABASE_URL)."""
    pooler = "postgresql://u@pgbouncer:6432/billing"
    settings = Settings.from_env({"DATABASE_URL": pooler, "BILLING_DATABASE_POOLER": "PgBouncer"})
    assert settings.direct_url == "postgresql+asyncpg://u@pgbouncer:6432/billing"
    assert settings.read_database_url is None and settings.pooled
    settings = Settings.from_env(
        {
            "DATABASE_URL": pooler,
            "BILLING_DIRECT_DATABASE_URL": "postgres://u@db:5432/billing",
            "BILLING_READ_DATABASE_URL": "postgresql://u@replica:5432/billing",
        }
    )
    assert settings.direct_url == "postgresql+asyncpg://u@db:5432/billing"
    assert settings.read_database_url == "postgresql+asyncpg://u@replica:5432/billing"
    assert not settings.pooled
    # Migrations and the `billing` commands hold sessions: they go to the server itself.
    with db.database_url(settings) as url:
        assert url == settings.direct_url


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "mysql://x"),
        ("BILLING_PORT", "http"),
        ("BILLING_PORT", "70000"),
        ("BILLING_WORKERS", "0"),
        ("DEFAULT_MARGIN", "-1"),
        ("DEFAULT_MARGIN", "NaN"),
        ("CREDITS_PER_USD", "lots"),
        ("BILLING_LOG_LEVEL", "LOUD"),
        ("BILLING_ACCESS_LOG", "maybe"),
        ("BILLING_DB_POOL_SIZE", "0"),
        ("BILLING_MAX_BODY_BYTES", "1"),
        ("OPENROUTER_BASE_URL", "openrouter.ai"),
        ("OLLAMA_BASE_URL", "ftp://127.0.0.1:11434"),
        ("BILLING_SYNC_SOURCES", "openrouter,bing"),
        ("BILLING_SYNC_INTERVAL_SECONDS", "5"),
        ("BILLING_SYNC_INTERVAL_SECONDS", "-1"),
        ("BILLING_SYNC_TIMEOUT_SECONDS", "0"),
        ("BILLING_SYNC_TIMEOUT_SECONDS", "nan"),
        ("BILLING_SYNC_RETRIES", "11"),
        ("BILLING_SYNC_MAX_BYTES", "10"),
        ("BILLING_DIRECT_DATABASE_URL", "db:5432"),
        ("BILLING_READ_DATABASE_URL", "mysql://replica"),
        ("BILLING_DATABASE_POOLER", "pgpool"),
    ],
)
def test_invalid_setting_names_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})
