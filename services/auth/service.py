"""Authentication: who is calling, from a password, an application token or nothing.

Application tokens are high-entropy secrets (256 bits) with a recognisable prefix; only their
SHA-256 is stored, which is enough for secrets that cannot be guessed, and makes checking one
a single indexed read. Passwords are argon2id hashes; a successful verification is remembered
for ``[auth] credential_cache_seconds`` under an HMAC of the credentials and the current hash
(never the password) and the account's credential epoch, so the docker CLI's Basic credentials
on every token request do not cost an argon2 verification each time. A password change changes
the hash and the epoch, and disabling, demotion, lockout and "sign out everywhere" the epoch
(services/auth/credentials.py), so each misses the cache at once; disabled and locked accounts
are checked before the cache.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NoReturn, Protocol

from services.auth.cache import ReadCache
from services.auth.models import User
from services.auth.passwords import verify_password
from services.auth.policy import Credential, Principal
from services.auth.ports import AuthStore
from services.core.errors import Unauthorized

__all__ = [
    "APP_TOKEN_PREFIX",
    "Authenticator",
    "LoginOutcome",
    "LoginPolicy",
    "PasswordDirectory",
    "new_secret",
    "parse_basic",
    "secret_hash",
]

APP_TOKEN_PREFIX = "dyat_"  # noqa: S105 - a prefix that makes leaked tokens recognisable
CACHE_ENTRIES = 10_000
# last_used_at is written at most this often per token, not on every request.
TOUCH_INTERVAL = timedelta(seconds=60)

_CHALLENGE = {"WWW-Authenticate": 'Basic realm="Dockyard", charset="UTF-8"'}


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    max_failures: int = 10
    lock_seconds: float = 600
    cache_seconds: float = 60
    # False: only admins sign in with a Dockyard password ([auth] local_login).
    local_login: bool = True


@dataclass(frozen=True, slots=True)
class LoginOutcome:
    """A verification that really ran (cache misses), for the audit log."""

    username: str
    success: bool
    reason: str


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """``(username, password)`` from an ``Authorization: Basic`` header, else None."""
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, ValueError):  # ValueError: non-ASCII characters in the header
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class PasswordDirectory(Protocol):
    """Checks passwords of accounts that have none in Dockyard (services/auth/directory.py)."""

    async def verify(self, username: str, password: str) -> User | None:
        """The (provisioned, synced) account when the password is right, else None."""
        ...


class Authenticator:
    def __init__(
        self,
        store: AuthStore,
        policy: LoginPolicy,
        on_login: Callable[[LoginOutcome], Awaitable[None]] | None = None,
        cache: ReadCache | None = None,
        directory: PasswordDirectory | None = None,
    ) -> None:
        self._store = store
        self._directory = directory
        self._policy = policy
        self._on_login = on_login
        self._cache = cache or ReadCache(0)
        # token id → when this process last recorded its use (the cached token's own
        # last_used_at goes stale, and must not make every request write).
        self._touched: dict[str, datetime] = {}
        self._key = secrets.token_bytes(32)
        # account name → (fingerprint of the credentials verified, when that stops counting)
        self._verified: dict[str, tuple[bytes, float]] = {}

    async def authenticate(self, username: str, secret: str) -> Principal:
        """The principal these credentials prove, or Unauthorized saying what is wrong."""
        if secret.startswith(APP_TOKEN_PREFIX):
            return await self._by_app_token(username, secret)
        return await self._by_password(username, secret)

    async def from_header(self, header: str | None) -> Principal | None:
        """The caller of an API request: Basic (password or token), Bearer (token), or None."""
        if header and header[:7].lower() == "bearer ":
            return await self._by_app_token(None, header[7:].strip())
        credentials = parse_basic(header)
        if credentials is None:
            if header:
                raise Unauthorized("unauthorized", "use HTTP Basic or a Bearer app token",
                                   _CHALLENGE)
            return None
        return await self.authenticate(*credentials)

    async def _by_app_token(self, username: str | None, token: str) -> Principal:
        """``username`` None: a Bearer token, which names its account itself."""
        digest = secret_hash(token)
        found = await self._cache.get(("app-token", digest),
                                      lambda: self._store.find_app_token(digest))
        now = datetime.now(UTC)
        app_token, user = found or (None, None)
        if (app_token is None or user is None or app_token.revoked
                or (username is not None and app_token.user != username)
                or (app_token.expires_at is not None and app_token.expires_at <= now)):
            if username is not None:
                await self._report(username, success=False, reason="bad application token")
            raise Unauthorized("unauthorized", "wrong username or token (revoked or expired?)",
                               _CHALLENGE)
        username = user.name
        if not user.enabled:
            raise Unauthorized("account_disabled", f"the account {username!r} is disabled",
                               _CHALLENGE)
        last_used = self._touched.get(app_token.id, app_token.last_used_at)
        if last_used is None or now - last_used > TOUCH_INTERVAL:
            if len(self._touched) >= CACHE_ENTRIES:
                self._touched.clear()
            self._touched[app_token.id] = now
            await self._store.touch_app_token(app_token.id, now)
        return _principal(user, "app_token", app_token.id)

    async def _user(self, name: str) -> tuple[User, str | None] | None:
        return await self._cache.get(("user", name), lambda: self._store.get_user(name))

    async def _record_login(self, username: str, *, success: bool, lock_until: datetime
                            ) -> User | None:
        updated = await self._store.record_login(
            username, success=success, max_failures=self._policy.max_failures,
            lock_until=lock_until)
        self._cache.invalidate()
        return updated

    async def _by_password(self, username: str, password: str) -> Principal:
        found = await self._user(username)
        user, password_hash = found or (None, None)
        now = datetime.now(UTC)
        if user is not None and (not user.enabled or user.locked_until is not None):
            # A disabled or locked account forgets its verified credentials.
            self._verified.pop(username, None)
        if user is not None and user.locked_until is not None:
            if user.locked_until > now:
                raise Unauthorized(
                    "account_locked",
                    f"too many failed logins; try again after {user.locked_until:%H:%M:%S} UTC",
                    _CHALLENGE,
                )
            # The lock ran out: count anew, so that only max_failures consecutive failures
            # lock again (not the first one after the lock).
            await self._record_login(username, success=True, lock_until=now)
        # Accounts without a Dockyard password (and unknown names) may be the directory's.
        external = self._directory is not None and password_hash is None and (
            user is None or user.kind == "user")
        if user is None and not external:
            # Unknown names still pay one verification: timing does not tell which exist.
            await asyncio.to_thread(verify_password, None, password)
            await self._failed(username, None)
        epoch = user.credential_epoch if user is not None else 0
        fingerprint = hmac.new(
            self._key, f"{username}\0{password}\0{password_hash}\0{epoch}".encode(),
            hashlib.sha256).digest()
        loop = asyncio.get_running_loop()
        cached = self._verified.get(username)
        if user is None or cached is None or cached[1] < loop.time() or not hmac.compare_digest(
                cached[0], fingerprint):
            user = await self._verify(username, password, user, password_hash,
                                      external=external)
            # After the password: the refusal must not tell which accounts are local.
            self._check_local_login(user, password_hash)
            if not user.enabled:
                await self._report(username, success=False, reason="account disabled")
                raise Unauthorized("account_disabled",
                                   f"the account {username!r} is disabled", _CHALLENGE)
            if len(self._verified) >= CACHE_ENTRIES:
                self._verified.clear()
            self._verified[username] = (fingerprint, loop.time() + self._policy.cache_seconds)
            if user.failed_logins:
                await self._record_login(username, success=True, lock_until=now)
            await self._report(username, success=True, reason="password")
        return _principal(user, "password")

    async def _verify(self, username: str, password: str, user: User | None,
                      password_hash: str | None, *, external: bool) -> User:
        """The account if the password is right. The directory checks the passwords of
        ``external`` accounts (and syncs them); DirectoryUnavailable (503) passes through, so
        the caller knows it is not their password that failed."""
        if external and self._directory is not None:
            verified = await self._directory.verify(username, password)
            if verified is None:
                await self._failed(username, user)
            return verified
        if user is None or not await asyncio.to_thread(verify_password, password_hash,
                                                        password):
            await self._failed(username, user)
        return user

    def _check_local_login(self, user: User | None, password_hash: str | None) -> None:
        if user is not None and password_hash is not None and not self._policy.local_login \
                and not user.admin:
            raise Unauthorized("local_login_disabled", "sign-in with a Dockyard password is"
                               " turned off here; use your directory account or an app token",
                               _CHALLENGE)

    async def _failed(self, username: str, user: User | None) -> NoReturn:
        reason = "wrong password" if user is not None else "unknown account"
        if user is not None:
            lock_until = datetime.now(UTC) + timedelta(seconds=self._policy.lock_seconds)
            updated = await self._record_login(username, success=False, lock_until=lock_until)
            if updated is not None and updated.locked_until is not None:
                reason += f"; locked after {updated.failed_logins} failures"
                if user.locked_until is None or user.locked_until <= datetime.now(UTC):
                    # this failure locked it
                    await self._end_credentials(username)
        await self._report(username, success=False, reason=reason)
        raise Unauthorized("unauthorized", "wrong username or password", _CHALLENGE)

    async def _end_credentials(self, username: str) -> None:
        """A lockout ends the account's sessions and refresh tokens too: a locked account
        does not go on through credentials it already holds (services/auth/credentials.py)."""
        await self._store.update_user(username, bump_epoch=True)
        self._cache.invalidate()

    async def _report(self, username: str, *, success: bool, reason: str) -> None:
        if self._on_login is not None:
            await self._on_login(LoginOutcome(username, success, reason))


def _principal(user: User, credential: Credential, credential_id: str | None = None
               ) -> Principal:
    return Principal(user.name, user.kind, admin=user.admin, enabled=user.enabled,
                     credential=credential, credential_id=credential_id)
