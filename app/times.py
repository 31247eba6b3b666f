"""Times from clients: they must say their offset, and are kept in UTC."""

from datetime import UTC, datetime

from app.errors import InvalidRequest


def utc(value: datetime, field: str) -> datetime:
    """`value` in UTC; a naive time (in some unknown zone) or one outside the calendar is a 400."""
    if value.tzinfo is None:
        raise InvalidRequest(f"`{field}` needs a time zone offset (RFC 3339)", param=field)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is past the year 9999 in UTC
        raise InvalidRequest(f"`{field}` is outside the years 1 to 9999 in UTC", param=field) from None


def aware(value: datetime | None, field: str) -> datetime | None:
    """An optional time filter, in UTC."""
    return None if value is None else utc(value, field)
