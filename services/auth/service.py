"""Authentication: who is calling."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time

from services.auth.models import User
from services.auth.passwords import verify_password
from services.auth.ports import UserStore

__all__ = ["Authenticator", "parse_basic"]

# How long a verified password is remembered, so API clients that send Basic credentials on
# every request do not pay an argon2 verification each time.
CACHE_SECONDS = 60.0
CACHE_ENTRIES = 10_000


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """``(username, password)`` from an ``Authorization: Basic`` header, else None."""
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


class Authenticator:
    """Checks passwords off the event loop, remembering successes for a short while.

    The cache holds an HMAC of the credentials under a per-process key, never the password.
    """

    def __init__(self, store: UserStore) -> None:
        self._store = store
        self._key = secrets.token_bytes(32)
        self._verified: dict[bytes, float] = {}

    async def authenticate(self, username: str, password: str) -> User | None:
        """The enabled user whose password this is, else None (same cost either way)."""
        found = await self._store.get_user(username)
        user, password_hash = found or (None, None)
        fingerprint = hmac.new(
            self._key, f"{username}\0{password}\0{password_hash}".encode(), hashlib.sha256
        ).digest()
        if self._verified.get(fingerprint, 0.0) < time.monotonic():
            if not await asyncio.to_thread(verify_password, password_hash, password):
                return None
            if len(self._verified) >= CACHE_ENTRIES:
                self._verified.clear()
            self._verified[fingerprint] = time.monotonic() + CACHE_SECONDS
        return user if user is not None and user.enabled else None
