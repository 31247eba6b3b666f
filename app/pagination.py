"""Opaque cursors for `{"data": [...], "next_cursor": ...}` lists."""

import base64
import binascii
from typing import Any, Generic, TypeVar

import msgspec

from app.errors import InvalidRequest

T = TypeVar("T")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class Page(msgspec.Struct, Generic[T]):
    data: list[T]
    next_cursor: str | None


def encode_cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(values)).decode().rstrip("=")


def decode_cursor(cursor: str | None, *types: type) -> tuple | None:
    """The sort key a cursor stands for, typed; any tampering is a 400, never a 500."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return msgspec.json.decode(raw, type=tuple[*types])
    except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise InvalidRequest("Invalid `cursor`", param="cursor") from None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"`limit` must be between 1 and {MAX_LIMIT}", param="limit")
    return limit


def page(rows: list, limit: int, key, shape) -> Page:
    """`rows` holds up to limit+1 rows: the extra one only tells that another page exists."""
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = encode_cursor(*key(rows[-1])) if more and rows else None
    return Page(data=[shape(row) for row in rows], next_cursor=cursor)
