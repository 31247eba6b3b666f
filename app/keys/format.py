"""What an API key looks like. Free of third-party imports: `billing` reads it before it loads the app."""

import hashlib
import secrets

SCOPES = ("catalog:read", "usage:write", "ledger:read", "admin")
KEY_PREFIX = "cmk_"
KEY_ID_LENGTH = 12
HEX = frozenset("0123456789abcdef")


def key_id_of(text: str) -> str | None:
    """The key id named by `text`: the id itself, its `cmk_<id>` form, or the whole secret key
    (`cmk_<id><secret>`). None when it is none of them."""
    text = text.strip()
    if text.startswith(KEY_PREFIX):
        text = text[len(KEY_PREFIX) : len(KEY_PREFIX) + KEY_ID_LENGTH]
    elif len(text) != KEY_ID_LENGTH:
        return None
    if len(text) != KEY_ID_LENGTH or not set(text) <= HEX:
        return None
    return text


def new_key() -> tuple[str, str]:
    """A fresh (key id, full secret key); the id is public and also the key's lookup handle."""
    key_id = secrets.token_hex(KEY_ID_LENGTH // 2)
    return key_id, f"{KEY_PREFIX}{key_id}{secrets.token_urlsafe(32)}"


def hash_key(key: str) -> bytes:
    # The secret carries 256 random bits, so a fast hash is as strong as a slow one here.
    return hashlib.sha256(key.encode()).digest()
