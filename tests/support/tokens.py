"""The token endpoint's answers as a client reads them, and cheap password hashes for tests.

``unverified`` reads a registry token's claims (the signature is test_token_endpoint's to
check), ``error_of`` either of the endpoint's error shapes, and ``cheap_hashing`` makes the
accounts a test creates verify in a millisecond instead of ninety.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest.mock import patch

import httpx
import jwt
from argon2 import PasswordHasher

__all__ = ["cheap_hashing", "error_of", "unverified"]

# argon2id at its lowest cost: the hash records its parameters, so logins verify it as usual,
# only faster. Hashing cost is not what the tests that use it test.
_CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def unverified(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def error_of(response: httpx.Response) -> tuple[str, str]:
    """``(code, message)`` of either error shape: Dockyard's ``error`` object, or for the
    OAuth2 POST RFC 6749 §5.2's ``error`` and ``error_description``."""
    body = response.json()
    if response.request.method == "POST" and isinstance(body["error"], str):
        return body["error"], body["error_description"]
    return body["error"]["code"], body["error"]["message"]


@contextmanager
def cheap_hashing() -> Iterator[None]:
    """Accounts created (and passwords set) meanwhile get the cheapest argon2id hashes."""
    with patch("services.auth.identity.hash_password", _CHEAP_HASHER.hash):
        yield
