"""Plugs the auth service into the application, and opens it for the CLI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from services.auth.access import AUTHENTICATOR, AUTHORITY, IDENTITY
from services.auth.adapters.sqlite import SqliteAuthStore
from services.auth.api import routes as identity_routes
from services.auth.audit import Audit
from services.auth.authority import TokenAuthority, TokenSettings
from services.auth.identity import IdentityService, Permissions
from services.auth.keys import Keyring
from services.auth.policy import Policy
from services.auth.service import Authenticator, LoginOutcome, LoginPolicy
from services.auth.token_api import RATE_LIMITS, RateLimits
from services.auth.token_api import routes as token_routes
from services.core.config import Config
from services.core.eventlog import EventLog
from services.core.web import CONFIG, EVENT_LOG, HEALTH, SERVICE_TOKENS

__all__ = ["AUTH_DB", "Auth", "keyring", "open_auth", "setup"]

AUTH_DB = Path("auth.db")


def setup(app: web.Application) -> None:
    app.router.add_routes(token_routes)
    app.router.add_routes(identity_routes)
    app.cleanup_ctx.append(_auth_ctx)


def keyring(config: Config) -> Keyring:
    return Keyring(config.path(config.auth.keys_dir), config.path(config.auth.certificate_bundle))


@dataclass(frozen=True, slots=True)
class Auth:
    """The auth service's parts, wired from the configuration."""

    store: SqliteAuthStore
    authenticator: Authenticator
    authority: TokenAuthority
    identity: IdentityService


@asynccontextmanager
async def open_auth(config: Config, event_log: EventLog) -> AsyncIterator[Auth]:
    """The auth service on its store, for ``serve`` and for the CLI commands."""
    store = SqliteAuthStore(config.path(AUTH_DB))
    await store.open()
    audit = Audit(event_log)
    settings = config.auth

    async def on_login(outcome: LoginOutcome) -> None:
        await audit.record("user.login" if outcome.success else "user.login_failed",
                           outcome.username, subject=outcome.username,
                           details={"reason": outcome.reason})

    try:
        authority = TokenAuthority(store, keyring(config).active(), TokenSettings(
            issuer=settings.issuer,
            service=settings.service,
            ttl=settings.token_ttl_seconds,
            policy=Policy(anonymous_pull=settings.anonymous_pull,
                          delete_contributors=settings.delete_contributors,
                          push_policy=settings.push_policy),
        ))
        authenticator = Authenticator(store, LoginPolicy(
            max_failures=settings.max_failed_logins,
            lock_seconds=settings.lockout_seconds,
            cache_seconds=settings.credential_cache_seconds,
        ), on_login=on_login)
        permissions = config.permissions
        identity = IdentityService(store, audit, Permissions(
            create_team=permissions.create_team,
            manage_team=permissions.manage_team,
            create_namespace=permissions.create_namespace,
            manage_namespace=permissions.manage_namespace,
            change_visibility=permissions.change_visibility,
        ))
        yield Auth(store, authenticator, authority, identity)
    finally:
        await store.close()


async def _auth_ctx(app: web.Application) -> AsyncIterator[None]:
    async with open_auth(app[CONFIG], app[EVENT_LOG]) as auth:
        app[AUTHENTICATOR] = auth.authenticator
        app[AUTHORITY] = auth.authority
        app[IDENTITY] = auth.identity
        app[SERVICE_TOKENS] = auth.authority.service_token
        settings = app[CONFIG].auth
        app[RATE_LIMITS] = RateLimits(settings.rate_per_ip_per_minute,
                                      settings.rate_per_user_per_minute)
        app[HEALTH].add("auth-store", auth.store.db.ping)
        yield
