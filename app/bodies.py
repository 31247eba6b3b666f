"""Request bodies: JSON that cannot be decoded is the client's fault (400), never a crash.

Limits, beyond the body size (MAX_BODY_BYTES):
- A body must be UTF-8 (RFC 8259 section 8.1).
- Nesting: a free-form object the service keeps verbatim (a provider's `usage`) nests at most
  MAX_JSON_DEPTH levels (checked in app/usage/reported.py); every other field has a fixed shape, so
  deeper JSON there is already a type error. A body nested deeper than the decoder can follow (about
  a thousand levels) is refused whole with the same 400.
"""

from typing import Any

from litestar import Request

from app.errors import InvalidRequest

# Provider usage objects nest three levels; 32 leaves room for any future shape.
MAX_JSON_DEPTH = 32


class JsonRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        try:
            return await super().json()
        except UnicodeDecodeError:
            raise InvalidRequest("The request body is not valid UTF-8") from None
        except RecursionError:
            raise InvalidRequest(f"The request body nests deeper than {MAX_JSON_DEPTH} levels") from None


def nests_deeper(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether decoded JSON nests more than `limit` objects or arrays deep (without recursion)."""
    level: list[Any] = [value]
    for _ in range(limit):
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True
