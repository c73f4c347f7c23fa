"""Server-side browser sessions for the portal (and LDAP/OIDC sign-in).

A session is a random 256-bit id in an ``HttpOnly``, ``SameSite=Lax`` cookie (``Secure`` when
the external URL is https); the store keeps only its SHA-256, so a copy of the store does not
let anyone in. A session ends ``session_ttl_seconds`` after sign-in, after
``session_idle_seconds`` without a request, at sign-out, when its account is disabled or
removed, and when the account's credential epoch moves on (a password change, disabling,
removing admin rights, a lockout, "sign out everywhere": services/auth/credentials.py). Both
are checked on every request against the account as it is now, so the session's rights are
always the account's current ones; a session found ended is deleted.

Each session carries its own CSRF token, which every form posts back and which is compared in
constant time (OWASP CSRF cheat sheet, "synchronizer token pattern"). Before sign-in there is
no session: the sign-in form is protected by a double-submit cookie instead.

How another sign-in method (LDAP, OIDC …) starts a session, once it has verified the person::

    from services.auth.sessions import sign_in
    response = web.HTTPSeeOther("/")
    await sign_in(request, response, "alice", method="oidc")
    raise response  # aiohttp wants redirects raised

``sign_in`` checks the account exists and is enabled, creates the session, and sets the
cookie on ``response``. ``current(request)`` says who is signed in, ``sign_out`` ends it.

``stash(request, text)`` keeps one secret for the session's next page, which ``take_stashed``
reads once (POST-redirect-GET for a page that must show a new secret once, as a created app
token). It is stored AES-GCM encrypted under a key derived from the session id, which only the
browser holds, so the store never holds it readably either.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from aiohttp import web
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.auth.models import User
from services.auth.policy import Principal
from services.auth.ports import AuthStore
from services.core.errors import Forbidden
from services.core.web import CONFIG

__all__ = [
    "COOKIE",
    "SESSIONS",
    "Session",
    "SessionSettings",
    "SessionStore",
    "Sessions",
    "SignInMethod",
    "SignedIn",
    "csrf_matches",
    "current",
    "expiry",
    "sign_in",
    "sign_out",
    "stash",
    "take_stashed",
]

SignInMethod = Literal["password", "ldap", "oidc", "github"]

COOKIE = "dockyard_session"
# last_seen_at (and so the idle expiry) is written at most this often per session.
TOUCH_INTERVAL = timedelta(seconds=60)
_NONCE_BYTES = 12  # AES-GCM's standard nonce (NIST SP 800-38D §8.2)


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    method: SignInMethod
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    # The account's credential epoch at sign-in: the session counts only while it is current.
    credential_epoch: int = 0


@dataclass(frozen=True, slots=True)
class SessionSettings:
    ttl: timedelta
    idle: timedelta


class SessionStore(Protocol):
    """Sessions by the SHA-256 of their id (SQLite by default, MongoDB at scale)."""

    async def create(self, id_hash: bytes, session: Session) -> None: ...

    async def get(self, id_hash: bytes) -> Session | None: ...

    async def touch(self, id_hash: bytes, *, last_seen_at: datetime,
                    expires_at: datetime) -> None: ...

    async def delete(self, id_hash: bytes) -> bool:
        """Whether there was such a session."""
        ...

    async def delete_user(self, user: str) -> int:
        """End every session of ``user``; returns how many there were."""
        ...

    async def prune(self, now: datetime) -> int:
        """Delete sessions that expired before ``now``; returns how many."""
        ...

    async def set_stash(self, id_hash: bytes, stash: bytes) -> None:
        """Keep ``stash`` with the session (replacing any), until ``take_stash``."""
        ...

    async def take_stash(self, id_hash: bytes) -> bytes | None:
        """The session's stash, removed in the same step: a second take gets None."""
        ...


def expiry(created_at: datetime, last_seen_at: datetime, settings: SessionSettings) -> datetime:
    """When a session ends: at its absolute lifetime or its idle limit, whichever is first."""
    return min(created_at + settings.ttl, last_seen_at + settings.idle)


def csrf_matches(expected: str, given: str | None) -> bool:
    """Constant-time comparison, so the token cannot be guessed a character at a time."""
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _stash_key(secret: str) -> AESGCM:
    return AESGCM(hmac.new(secret.encode(), b"dockyard-session-stash", hashlib.sha256).digest())


@dataclass(frozen=True, slots=True)
class SignedIn:
    """Who a request's session belongs to."""

    session: Session
    user: User

    @property
    def principal(self) -> Principal:
        return self.user.principal("session")

    def signed_in_within(self, window: timedelta) -> bool:
        """Whether the person signed in that recently (a proof of presence, like sudo's)."""
        return datetime.now(UTC) - self.session.created_at < window


class Sessions:
    def __init__(self, store: SessionStore, accounts: AuthStore, settings: SessionSettings) -> None:
        self.store = store
        self._accounts = accounts
        self.settings = settings

    async def start(self, user: str, method: SignInMethod) -> tuple[str, Session]:
        """A new session for an account already proven; returns the cookie's secret value."""
        found = await self._accounts.get_user(user)
        if found is None or not found[0].enabled or found[0].kind != "user":
            raise Forbidden("account_disabled", f"the account {user!r} cannot sign in")
        now = datetime.now(UTC)
        secret = secrets.token_urlsafe(32)
        session = Session(user, method, secrets.token_urlsafe(32), now, now,
                          expiry(now, now, self.settings), found[0].credential_epoch)
        await self.store.create(_hash(secret), session)
        return secret, session

    async def resume(self, secret: str) -> SignedIn | None:
        """The live session with this id and its enabled account, still in the epoch it was
        started in; else None (and it is gone)."""
        id_hash = _hash(secret)
        session = await self.store.get(id_hash)
        if session is None:
            return None
        now = datetime.now(UTC)
        if session.expires_at <= now:
            await self.store.delete(id_hash)
            return None
        found = await self._accounts.get_user(session.user)
        if found is None or not found[0].enabled:
            await self.store.delete_user(session.user)
            return None
        if found[0].credential_epoch != session.credential_epoch:
            await self.store.delete(id_hash)
            return None
        if now - session.last_seen_at >= TOUCH_INTERVAL:
            session = replace(session, last_seen_at=now,
                              expires_at=expiry(session.created_at, now, self.settings))
            await self.store.touch(id_hash, last_seen_at=now, expires_at=session.expires_at)
        return SignedIn(session, found[0])

    async def end(self, secret: str) -> None:
        await self.store.delete(_hash(secret))

    async def stash(self, secret: str, text: str) -> None:
        id_hash = _hash(secret)
        nonce = os.urandom(_NONCE_BYTES)
        sealed = _stash_key(secret).encrypt(nonce, text.encode(), id_hash)
        await self.store.set_stash(id_hash, nonce + sealed)

    async def take(self, secret: str) -> str | None:
        id_hash = _hash(secret)
        stashed = await self.store.take_stash(id_hash)
        if stashed is None:
            return None
        try:
            plain = _stash_key(secret).decrypt(stashed[:_NONCE_BYTES], stashed[_NONCE_BYTES:],
                                               id_hash)
        except InvalidTag:
            return None  # not sealed for this session: nothing to show
        return plain.decode()

    async def end_all(self, user: str) -> int:
        return await self.store.delete_user(user)


SESSIONS = web.AppKey("auth.sessions", Sessions)
_SIGNED_IN = web.RequestKey("auth.signed_in", object)


async def current(request: web.Request) -> SignedIn | None:
    """Who is signed in through this request's session cookie (looked up once per request)."""
    if _SIGNED_IN in request:
        cached = request[_SIGNED_IN]
        return cached if isinstance(cached, SignedIn) else None
    secret = request.cookies.get(COOKIE)
    found = await request.app[SESSIONS].resume(secret) if secret else None
    request[_SIGNED_IN] = found
    return found


async def sign_in(
    request: web.Request, response: web.StreamResponse, user: str, *, method: SignInMethod
) -> Session:
    """Start a session for ``user`` (already verified by ``method``) and set its cookie.

    A session this browser already had ends: a new sign-in always gets a new id (no session
    fixation), and the old one does not linger until it expires.
    """
    previous = request.cookies.get(COOKIE)
    if previous:
        await request.app[SESSIONS].end(previous)
    secret, session = await request.app[SESSIONS].start(user, method)
    config = request.app[CONFIG]
    response.set_cookie(
        COOKIE, secret, httponly=True, samesite="Lax", path="/",
        secure=config.server.external_url.startswith("https:"),
        max_age=int(request.app[SESSIONS].settings.ttl.total_seconds()),
    )
    return session


async def stash(request: web.Request, text: str) -> None:
    """Keep ``text`` for this request's session's next ``take_stashed`` (signed in only)."""
    secret = request.cookies.get(COOKIE)
    if not secret or await current(request) is None:
        raise Forbidden("not_signed_in", "sign in first")
    await request.app[SESSIONS].stash(secret, text)


async def take_stashed(request: web.Request) -> str | None:
    """What ``stash`` kept for this session, once; None when nothing (or not signed in)."""
    secret = request.cookies.get(COOKIE)
    if not secret or await current(request) is None:
        return None
    return await request.app[SESSIONS].take(secret)


async def sign_out(request: web.Request, response: web.StreamResponse) -> None:
    secret = request.cookies.get(COOKIE)
    if secret:
        await request.app[SESSIONS].end(secret)
    response.del_cookie(COOKIE, path="/")
