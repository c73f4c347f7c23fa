"""Registry bearer tokens (distribution docs/spec/auth/jwt.md and token.md).

Header: ``typ`` JWT, ``alg`` ES256 or RS256, ``x5c`` (the signing certificate) and ``kid``
(its libtrust id): with x5c the same token verifies on registry 2.8, 3.0 and 3.1+.
Claims: ``iss``, ``sub`` (the authenticated user, "" for anonymous), ``aud`` (the service, a
string: 2.8 rejects an array), ``exp``/``nbf``/``iat`` (integers), a unique ``jti`` and
``access``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt

from services.auth.keys import SigningKey

__all__ = ["Grant", "IssuedToken", "issue_token"]


@dataclass(frozen=True, slots=True)
class Grant:
    type: str
    name: str
    actions: frozenset[str]

    def claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": sorted(self.actions)}


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int
    issued_at: int


def issue_token(
    key: SigningKey,
    *,
    issuer: str,
    audience: str,
    subject: str,
    grants: Iterable[Grant],
    ttl: int,
    now: int,
) -> IssuedToken:
    # The registry allows 60 s of clock skew; nbf a little in the past covers small offsets.
    claims = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "exp": now + ttl,
        "nbf": now - 10,
        "iat": now,
        "jti": secrets.token_urlsafe(16),
        "access": [g.claim() for g in grants],
    }
    token = jwt.encode(
        claims, key.private_key, algorithm=key.algorithm,
        headers={"typ": "JWT", "kid": key.kid, "x5c": key.x5c},
    )
    return IssuedToken(token, ttl, now)
