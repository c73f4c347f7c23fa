"""Plugs the auth service into the application, and opens it for the CLI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from services.auth.access import AUTHENTICATOR, AUTHORITY, CATALOG, IDENTITY
from services.auth.adapters.sqlite import SqliteAuthStore
from services.auth.api import routes as identity_routes
from services.auth.audit import Audit
from services.auth.authority import TokenAuthority, TokenSettings
from services.auth.cache import ReadCache
from services.auth.directory_api import routes as directory_routes
from services.auth.directory_app import DIRECTORY, DirectoryParts, directory_ctx, open_directory
from services.auth.identity import IdentityService, Permissions
from services.auth.keys import Keyring
from services.auth.lockout import LockoutPolicy
from services.auth.policy import Policy
from services.auth.ports import AuthStore, Catalog
from services.auth.refresh import RefreshPolicy, RefreshTokens
from services.auth.service import Authenticator, LoginOutcome, LoginPolicy
from services.auth.sessions_app import sessions_ctx
from services.auth.token_api import RATE_LIMITS, REFRESH_TOKENS, RateLimits
from services.auth.token_api import routes as token_routes
from services.core.config import Config
from services.core.eventlog import EventLog
from services.core.stores import open_backend_store
from services.core.web import CONFIG, EVENT_LOG, HEALTH, SERVICE_TOKENS

if TYPE_CHECKING:
    from services.auth.adapters.mongo import MongoAuthStore
    from services.core.mongo import MongoDatabase

__all__ = ["AUTH_DB", "Auth", "keyring", "open_auth", "open_auth_store", "setup"]

AUTH_DB = Path("auth.db")


def setup(app: web.Application) -> None:
    app.router.add_routes(token_routes)
    app.router.add_routes(identity_routes)
    app.router.add_routes(directory_routes)
    app.cleanup_ctx.append(_auth_ctx)
    app.cleanup_ctx.append(directory_ctx)
    app.cleanup_ctx.append(sessions_ctx)


def keyring(config: Config) -> Keyring:
    return Keyring(config.path(config.auth.keys_dir), config.path(config.auth.certificate_bundle))


@dataclass(frozen=True, slots=True)
class Auth:
    """The auth service's parts, wired from the configuration."""

    store: AuthStore
    authenticator: Authenticator
    authority: TokenAuthority
    identity: IdentityService
    directory: DirectoryParts


def open_auth_store(config: Config) -> AbstractAsyncContextManager[AuthStore]:
    """The auth store ``[store] backend`` (DOCKYARD_STORE) chooses, open until the exit."""
    return open_backend_store(config, lambda: SqliteAuthStore(config.path(AUTH_DB)),
                              _mongo_auth_store)


def _mongo_auth_store(database: MongoDatabase) -> MongoAuthStore:
    from services.auth.adapters.mongo import MongoAuthStore  # noqa: PLC0415 - optional extra

    return MongoAuthStore(database)


@asynccontextmanager
async def open_auth(config: Config, event_log: EventLog, catalog: Catalog) -> AsyncIterator[Auth]:
    """The auth service on its store, for ``serve`` and for the CLI commands; ``catalog`` is
    ingest's (services/ingest/reader.py), opened by the caller."""
    stores = AsyncExitStack()
    store = await stores.enter_async_context(open_auth_store(config))
    settings = config.auth
    cache = ReadCache(settings.identity_cache_seconds)
    audit = Audit(event_log, on_change=cache.invalidate)
    stack = AsyncExitStack()

    async def on_login(outcome: LoginOutcome) -> None:
        await audit.record("user.login" if outcome.success else "user.login_failed",
                           outcome.username, subject=outcome.username,
                           details={"reason": outcome.reason})

    try:
        directory = await stack.enter_async_context(open_directory(config, store, audit, catalog))
        permissions = config.permissions
        identity = IdentityService(store, audit, Permissions(
            create_team=permissions.create_team,
            manage_team=permissions.manage_team,
            create_namespace=permissions.create_namespace,
            manage_namespace=permissions.manage_namespace,
            change_visibility=permissions.change_visibility,
        ), catalog)
        authority = TokenAuthority(store, keyring(config).active(), TokenSettings(
            issuer=settings.issuer,
            service=settings.service,
            ttl=settings.token_ttl_seconds,
            policy=Policy(anonymous_pull=settings.anonymous_pull,
                          delete_contributors=settings.delete_contributors,
                          push_policy=settings.push_policy,
                          create_namespace_on_push=settings.create_namespace_on_push),
        ), cache, identity.create_namespace_for_push if settings.create_namespace_on_push
            else None)
        authenticator = Authenticator(store, LoginPolicy(
            lockout=LockoutPolicy(
                max_failures=settings.max_failed_logins,
                lock_seconds=settings.lockout_seconds,
                max_lock_seconds=settings.lockout_max_seconds,
                address_failures=settings.max_failed_logins_per_address,
            ),
            cache_seconds=settings.credential_cache_seconds,
            local_login=settings.local_login,
        ), on_login=on_login, cache=cache, directory=directory.ldap)
        yield Auth(store, authenticator, authority, identity, directory)
    finally:
        await stack.aclose()
        await stores.aclose()


class _CatalogOf:
    """The catalog ingest's store context puts in ``app``, which opens after auth's."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    async def repository_count(self, namespace: str) -> int:
        return await self._app[CATALOG].repository_count(namespace)


async def _auth_ctx(app: web.Application) -> AsyncIterator[None]:
    async with open_auth(app[CONFIG], app[EVENT_LOG], _CatalogOf(app)) as auth:
        app[AUTHENTICATOR] = auth.authenticator
        app[AUTHORITY] = auth.authority
        app[IDENTITY] = auth.identity
        app[DIRECTORY] = auth.directory
        app[SERVICE_TOKENS] = auth.authority.service_token
        settings = app[CONFIG].auth
        app[RATE_LIMITS] = RateLimits(settings.rate_per_ip_per_minute,
                                      settings.rate_per_user_per_minute)
        app[REFRESH_TOKENS] = RefreshTokens(auth.store, RefreshPolicy(
            sliding=timedelta(seconds=settings.refresh_token_sliding_seconds),
            absolute=timedelta(seconds=settings.refresh_token_absolute_seconds)))
        app[HEALTH].add("auth-store", auth.store.ping)
        yield
