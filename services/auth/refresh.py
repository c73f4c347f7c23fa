"""Refresh tokens: what ``docker login`` keeps instead of the password (its "identity token").

A refresh token is minted by ``GET /v2/token?offline_token=true&client_id=…`` (docker login)
or ``POST /v2/token`` with ``grant_type=password&access_type=offline``, and traded for access
tokens with ``grant_type=refresh_token`` (distribution docs/spec/auth/oauth.md). Only its
SHA-256 is stored. Each one is bound to

- its account and the ``client_id`` it was issued to (RFC 6749 §6: a refresh token is
  redeemed only by the client it was issued to);
- the credential that minted it: a password, or one application token, whose revocation ends
  it (services/auth/identity.py) and whose expiry it never outlives;
- the account's credential epoch (services/auth/credentials.py): a password change, disabling,
  demotion, lockout or signing out everywhere ends it.

It expires ``[auth] refresh_token_sliding_seconds`` after its last use (30 days) and at the
latest ``refresh_token_absolute_seconds`` after the sign-in (90 days).

Rotation (RFC 9700 §4.14.2): every exchange answers with a new refresh token of the same
family. The one presented stays valid until its successor is first used, and then ends: the
docker daemon never stores the rotated token (moby's ``staticCredentialStore.SetRefreshToken``
does nothing), so it presents the one from ``docker login`` every time, which must keep
working. Presenting a token that has ended (its successor was used, or it was revoked) is a
reuse — two parties hold the family — and revokes the whole family; both sign in again.
Refusals are ``invalid_grant`` (RFC 6749 §5.2).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from services.auth.models import RefreshToken, User
from services.auth.policy import Principal
from services.auth.ports import AuthStore
from services.auth.service import new_secret, secret_hash
from services.core.errors import Invalid

__all__ = ["REFRESH_TOKEN_PREFIX", "RefreshPolicy", "RefreshTokens", "refusal"]

log = logging.getLogger("dockyard.auth")

REFRESH_TOKEN_PREFIX = "dyrt_"  # noqa: S105 - a prefix, not a secret
_REUSED = "this refresh token was already exchanged or revoked; sign in again"


@dataclass(frozen=True, slots=True)
class RefreshPolicy:
    sliding: timedelta = timedelta(days=30)
    absolute: timedelta = timedelta(days=90)


def refusal(token: RefreshToken, user: User, *, client_id: str, now: datetime,
            policy: RefreshPolicy) -> str | None:
    """Why the live ``token`` of ``user`` cannot be exchanged by ``client_id`` now, or None."""
    if client_id != token.client_id:
        return f"this refresh token was issued to another client than {client_id!r}"
    if not user.enabled:
        return f"the account {user.name!r} is disabled"
    if user.credential_epoch != token.credential_epoch:
        return "the account's credentials changed since this sign-in; sign in again"
    if now >= token.expires_at:
        return "this sign-in has expired; sign in again"
    if now >= (token.last_used_at or token.created_at) + policy.sliding:
        return "this refresh token expired unused; sign in again"
    return None


class RefreshTokens:
    def __init__(self, store: AuthStore, policy: RefreshPolicy) -> None:
        self._store = store
        self._policy = policy

    async def issue(self, principal: Principal, client_id: str) -> str:
        """A new family's first token, for ``principal`` just authenticated by a password or
        an application token."""
        if not client_id:
            raise Invalid("invalid_request", "client_id is required for a refresh token")
        found = await self._store.get_user(principal.name or "")
        if found is None or principal.credential not in {"password", "app_token"}:
            raise Invalid("invalid_request", "only a password or an application token gets"
                          " a refresh token")
        now = datetime.now(UTC)
        expires_at = now + self._policy.absolute
        credential = "password"
        if principal.credential == "app_token":
            credential = principal.credential_id or ""
            ends = next((t.expires_at for t in await self._store.list_app_tokens(found[0].name)
                         if t.id == credential), None)
            expires_at = min(expires_at, ends or expires_at)
        secret = new_secret(REFRESH_TOKEN_PREFIX)
        digest = secret_hash(secret)
        await self._store.create_refresh_token(RefreshToken(
            digest.hex()[:16], 0, found[0].name, client_id, credential,
            found[0].credential_epoch, now, expires_at), digest)
        return secret

    async def redeem(self, secret: str, client_id: str) -> tuple[Principal, str]:
        """The account the token stands for, and the token that replaces it."""
        digest = secret_hash(secret)
        found = await self._store.find_refresh_token(digest)
        if found is None:
            raise Invalid("invalid_grant", "unknown refresh token; sign in again")
        token, user = found
        if token.revoked:
            await self._reused(token)
        now = datetime.now(UTC)
        problem = refusal(token, user, client_id=client_id, now=now, policy=self._policy)
        if problem is not None:
            raise Invalid("invalid_grant", problem)
        successor_secret = new_secret(REFRESH_TOKEN_PREFIX)
        successor = replace(token, generation=token.generation + 1, created_at=now,
                            last_used_at=None)
        if not await self._store.rotate_refresh_token(digest, successor,
                                                      secret_hash(successor_secret), now):
            await self._reused(token)  # its successor was used meanwhile
        return user.principal("refresh_token"), successor_secret

    async def _reused(self, token: RefreshToken) -> NoReturn:
        revoked = await self._store.revoke_refresh_family(token.family)
        if revoked:
            log.warning("refresh token reused: its family is revoked", extra={
                "user": token.user, "client_id": token.client_id, "family": token.family})
        raise Invalid("invalid_grant", _REUSED)
