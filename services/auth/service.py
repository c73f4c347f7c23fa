"""Authentication: who is calling, from a password, an application token or nothing.

Application tokens are high-entropy secrets (256 bits) with a recognisable prefix; only their
SHA-256 is stored, which is enough for secrets that cannot be guessed, and makes checking one
a single indexed read. Passwords are argon2id hashes; a successful verification is remembered
for ``[auth] credential_cache_seconds`` under a MAC (keyed BLAKE2b) of the credentials and the
current hash (never the password) and the account's credential epoch, so the docker CLI's
Basic credentials on every token request do not cost an argon2 verification each time. A
password change changes the hash and the epoch, and disabling, demotion, lockout and "sign out
everywhere" the epoch (services/auth/credentials.py), so each misses the cache at once;
disabled and locked accounts are checked before the cache. Concurrent misses for the same
credentials share one verification (single-flight), so a client whose connections all find the
cached credential expired at once costs one argon2 verification, and one ``user.login``.

Every verification is taken from the lockout's budgets first (services/auth/lockout.py): the
client address's and the account's, so parallel guesses cannot outrun the count.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NoReturn, Protocol

from services.auth.cache import ReadCache
from services.auth.lockout import AddressThrottle, LockoutPolicy, StrangerStates
from services.auth.models import LoginState, User
from services.auth.passwords import verify_password
from services.auth.policy import Principal
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
    lockout: LockoutPolicy = field(default_factory=LockoutPolicy)
    cache_seconds: float = 60
    # False: only admins sign in with a Dockyard password ([auth] local_login).
    local_login: bool = True


@dataclass(frozen=True, slots=True)
class LoginOutcome:
    """A verification that really ran (cache misses), for the audit log."""

    username: str
    success: bool
    reason: str
    # Set when this failure locked the account, or the name without one, until then: the
    # moment to act on a lockout.
    locked_until: datetime | None = None


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
        # fingerprint → the verification running for those credentials (single-flight)
        self._flights: dict[bytes, asyncio.Future[User]] = {}
        self._lockout = policy.lockout
        self._throttle = AddressThrottle(policy.lockout.address_failures)
        self._strangers = StrangerStates()

    async def authenticate(self, username: str, secret: str, *, source: str | None = None
                           ) -> Principal:
        """The principal these credentials prove, or Unauthorized saying what is wrong.
        ``source``: the client's address, whose failed passwords are throttled (None: none
        to throttle); TooManyRequests once it has failed too often."""
        if secret.startswith(APP_TOKEN_PREFIX):
            return await self._by_app_token(username, secret)
        return await self._by_password(username, secret, source)

    async def from_header(self, header: str | None, *, source: str | None = None
                          ) -> Principal | None:
        """The caller of an API request: Basic (password or token), Bearer (token), or None."""
        if header and header[:7].lower() == "bearer ":
            return await self._by_app_token(None, header[7:].strip())
        credentials = parse_basic(header)
        if credentials is None:
            if header:
                raise Unauthorized("unauthorized", "use HTTP Basic or a Bearer app token",
                                   _CHALLENGE)
            return None
        return await self.authenticate(*credentials, source=source)

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
        return user.principal("app_token", app_token.id)

    async def _user(self, name: str) -> tuple[User, str | None] | None:
        return await self._cache.get(("user", name), lambda: self._store.get_user(name))

    async def _by_password(self, username: str, password: str, source: str | None
                           ) -> Principal:
        found = await self._user(username)
        user, password_hash = found or (None, None)
        if user is not None and (not user.enabled or user.locked_until is not None):
            # A disabled or locked account forgets its verified credentials.
            self._verified.pop(username, None)
        if user is not None and self._lockout.locked(user.login_state, datetime.now(UTC)):
            raise _locked(user.locked_until)
        epoch = user.credential_epoch if user is not None else 0
        fingerprint = _fingerprint(self._key,
                                   f"{username}\0{password}\0{password_hash}\0{epoch}")
        cached = self._verified.get(username)
        if user is None or cached is None or cached[1] < time.monotonic() \
                or not hmac.compare_digest(cached[0], fingerprint):
            user = await self._single_flight(fingerprint, lambda: self._check(
                _Attempt(username, password, source, fingerprint), user, password_hash))
        return user.principal("password")

    async def _single_flight(self, fingerprint: bytes, check: Callable[[], Awaitable[User]]
                             ) -> User:
        """One check at a time per credential: concurrent misses (every connection of a
        client when its cached credential expires) share the first one's verification, and
        its one ``user.login``."""
        flight = self._flights.get(fingerprint)
        if flight is None:
            flight = asyncio.ensure_future(check())
            self._flights[fingerprint] = flight
            flight.add_done_callback(lambda done: self._landed(fingerprint, done))
        # shield: a caller that goes away does not cancel the check the others wait for.
        return await asyncio.shield(flight)

    def _landed(self, fingerprint: bytes, flight: asyncio.Future[User]) -> None:
        if self._flights.get(fingerprint) is flight:
            del self._flights[fingerprint]
        if not flight.cancelled():
            flight.exception()  # retrieved: every waiter may have gone

    async def _check(self, attempt: _Attempt, user: User | None, password_hash: str | None
                     ) -> User:
        """Verify a password as the lockout allows: a slot of the client address's failure
        budget and a reserved failure of the account are taken before the verification, and
        given back if the password is right (services/auth/lockout.py)."""
        username = attempt.username
        slot = None if attempt.source is None else self._throttle.take(attempt.source)
        try:
            user, password_hash, before, reserved = await self._reserve(
                username, user, password_hash)
        except BaseException:
            self._give_back(attempt, slot)
            raise
        # Accounts without a Dockyard password (and unknown names) may be the directory's.
        external = self._directory is not None and password_hash is None and (
            user is None or user.kind == "user")
        try:
            verified = await self._verify(username, attempt.password, user, password_hash,
                                          external=external)
        except BaseException:  # DirectoryUnavailable (503): not the caller's password
            self._give_back(attempt, slot)
            await self._set_login_state(username, user, before, expected=reserved)
            raise
        if verified is None:
            await self._failed(username, user, reserved)
        self._give_back(attempt, slot)
        # A success resets the count, whatever concurrent attempts made of it meanwhile.
        if not await self._set_login_state(username, user, LoginState(), expected=reserved):
            await self._set_login_state(username, user, LoginState(), expected=None)
        # After the password: the refusal must not tell which accounts are local.
        self._check_local_login(verified, password_hash)
        if not verified.enabled:
            await self._report(username, success=False, reason="account disabled")
            raise Unauthorized("account_disabled",
                               f"the account {username!r} is disabled", _CHALLENGE)
        if len(self._verified) >= CACHE_ENTRIES:
            self._verified.clear()
        self._verified[username] = (attempt.fingerprint,
                                    time.monotonic() + self._policy.cache_seconds)
        await self._report(username, success=True, reason="password")
        return verified

    async def _reserve(self, username: str, user: User | None, password_hash: str | None
                       ) -> tuple[User | None, str | None, LoginState, LoginState]:
        """Count this attempt as a failure before its verification, in one compare-and-set
        (retried on a fresh read if the state moved): ``(user, hash, before, reserved)``."""
        while True:
            before = self._strangers.get(username) if user is None else user.login_state
            reserved = self._lockout.reserve(before, datetime.now(UTC))
            if reserved is None:
                raise _locked(before.locked_until)
            if await self._set_login_state(username, user, reserved, expected=before):
                return user, password_hash, before, reserved
            found = await self._store.get_user(username)
            user, password_hash = found or (None, None)

    async def _set_login_state(self, username: str, user: User | None, state: LoginState,
                               *, expected: LoginState | None) -> bool:
        """``state`` where this name's logins are counted: its account, or, without one, this
        process's memory."""
        if user is None:
            return self._strangers.compare_and_set(username, state, expected)
        changed = await self._store.set_login_state(username, state, expected=expected)
        if changed and (expected is None or expected.locked_until != state.locked_until):
            self._cache.invalidate()  # a lock applies at once, to cached credentials too
        return changed

    def _give_back(self, attempt: _Attempt, slot: float | None) -> None:
        if attempt.source is not None and slot is not None:
            self._throttle.give_back(attempt.source, slot)

    async def _verify(self, username: str, password: str, user: User | None,
                      password_hash: str | None, *, external: bool) -> User | None:
        """The account if the password is right, else None. The directory checks the
        passwords of ``external`` accounts (and syncs them); DirectoryUnavailable (503) passes
        through, so the caller knows it is not their password that failed. Unknown names pay
        one verification too: timing does not tell which exist."""
        if external and self._directory is not None:
            return await self._directory.verify(username, password)
        right = await asyncio.to_thread(verify_password, password_hash, password)
        return user if right else None

    def _check_local_login(self, user: User | None, password_hash: str | None) -> None:
        if user is not None and password_hash is not None and not self._policy.local_login \
                and not user.admin:
            raise Unauthorized("local_login_disabled", "sign-in with a Dockyard password is"
                               " turned off here; use your directory account or an app token",
                               _CHALLENGE)

    async def _failed(self, username: str, user: User | None, reserved: LoginState
                      ) -> NoReturn:
        """A wrong password: its reserved failure stays counted, and locks the account if
        it reached the limit (``LoginOutcome.locked_until`` says so)."""
        reason = "wrong password" if user is not None else "unknown account"
        if reserved.locked_until is not None:
            reason += f"; locked after {reserved.failures} failures"
            if user is not None:
                await self._end_credentials(username)
        await self._report(username, success=False, reason=reason,
                           locked_until=reserved.locked_until)
        raise Unauthorized("unauthorized", "wrong username or password", _CHALLENGE)

    async def _end_credentials(self, username: str) -> None:
        """A lockout ends the account's sessions and refresh tokens too: a locked account
        does not go on through credentials it already holds (services/auth/credentials.py)."""
        await self._store.update_user(username, bump_epoch=True)
        self._cache.invalidate()

    async def _report(self, username: str, *, success: bool, reason: str,
                      locked_until: datetime | None = None) -> None:
        if self._on_login is not None:
            await self._on_login(LoginOutcome(username, success, reason, locked_until))


@dataclass(frozen=True, slots=True)
class _Attempt:
    username: str
    password: str
    source: str | None  # the client address, if there is one to throttle
    fingerprint: bytes


def _fingerprint(key: bytes, credentials: str) -> bytes:
    """What a verified password is remembered by: a MAC of the credentials under this
    process's random ``key``. Keyed BLAKE2b is a MAC by design (RFC 7693), and one call:
    HMAC-SHA256 through ``hmac.new`` cost 2.7 µs a request on the 2-core test machine, this
    0.7 µs."""
    return hashlib.blake2b(credentials.encode(), key=key, digest_size=32).digest()


def _locked(until: datetime | None) -> Unauthorized:
    """The refusal of a locked name, the same whether it has an account or not (each is
    locked alike), with the seconds left in ``Retry-After`` for whoever tells the person."""
    until = until or datetime.now(UTC)
    seconds = max(1, math.ceil((until - datetime.now(UTC)).total_seconds()))
    return Unauthorized("account_locked", f"too many failed logins; try again after"
                        f" {until:%H:%M:%S} UTC", {**_CHALLENGE, "Retry-After": str(seconds)})

