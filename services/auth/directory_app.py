"""Wires directory sign-in (LDAP, OIDC, GitHub) from the configuration into the auth service.

``open_directory`` opens the link store (``directory.db``) and the LDAP connection pool and
builds the sign-in providers; ``directory_ctx`` registers the periodic LDAP sync as a job
(``[ldap] sync_interval_seconds``; run beside the consumers) and the health check.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from services.auth.adapters.directory_sqlite import SqliteDirectoryStore
from services.auth.audit import Audit
from services.auth.directory import LDAP_SOURCE, Directory, LdapLogins, ldap_rules
from services.auth.ldap import LdapDirectory
from services.auth.oidc import Providers, build_providers
from services.auth.ports import AuthStore, Catalog, DirectoryStore
from services.auth.sessions import SignInMethod
from services.core.config import Config
from services.core.stores import open_backend_store
from services.core.web import CONFIG, HEALTH, JOBS, Job

if TYPE_CHECKING:
    from services.auth.adapters.directory_mongo import MongoDirectoryStore
    from services.core.mongo import MongoDatabase

__all__ = [
    "DIRECTORY",
    "DIRECTORY_DB",
    "DirectoryParts",
    "directory_ctx",
    "login_state_key",
    "open_directory",
    "open_directory_store",
    "suspend_inactive",
]

DIRECTORY_DB = Path("directory.db")
INACTIVITY_CHECK_SECONDS = 3600.0
log = logging.getLogger("dockyard.auth.directory")


@dataclass
class DirectoryParts:
    directory: Directory
    ldap: LdapLogins | None = None
    providers: Providers = field(default_factory=Providers)
    _ldap_client: LdapDirectory | None = None
    # Signs pending sign-ins (services/auth/directory_api.py); see login_state_key.
    state_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    async def ping_ldap(self) -> None:
        if self._ldap_client is not None:
            await self._ldap_client.ping()

    async def password_method(self, name: str) -> SignInMethod:
        """Who verified the password ``name`` just signed in with: the LDAP directory for an
        account linked to it (such accounts have no Dockyard password), else Dockyard."""
        link = await self.directory.links.account(name)
        return "ldap" if link is not None and link.source == LDAP_SOURCE else "password"


DIRECTORY = web.AppKey("auth.directory", DirectoryParts)


@asynccontextmanager
async def open_directory(
    config: Config, accounts: AuthStore, audit: Audit, catalog: Catalog
) -> AsyncIterator[DirectoryParts]:
    async with AsyncExitStack() as stack:
        links = await stack.enter_async_context(open_directory_store(config))
        directory = Directory(accounts, links, audit, catalog)
        settings = config.ldap
        client = None
        logins = None
        if settings.enabled:
            client = LdapDirectory(settings)
            stack.push_async_callback(client.close)
            logins = LdapLogins(client, directory, ldap_rules(
                settings.groups, settings.admin_group, settings.manage_manual_members))
        providers = build_providers(config, directory)
        stack.push_async_callback(providers.aclose)
        yield DirectoryParts(directory, logins, providers, client, login_state_key(config))


def login_state_key(config: Config) -> bytes:
    """The key of ``[auth] login_state_secret`` (its own secret: never the webhook's, which the
    registry holds too), or a random one for this process when it is not set."""
    secret = config.auth.login_state_secret
    if not secret:
        if config.oidc:
            log.warning("[auth] login_state_secret is not set: portal sign-ins must come back"
                        " to the process that began them")
        return secrets.token_bytes(32)
    return hashlib.sha256(b"dockyard-oidc-pending\0" + secret.encode()).digest()


def open_directory_store(config: Config) -> AbstractAsyncContextManager[DirectoryStore]:
    """The link store alone, where ``[store] backend`` says: ``open_directory`` also starts the
    LDAP pool and the OIDC providers, which an export has no use for."""
    return open_backend_store(config, lambda: SqliteDirectoryStore(config.path(DIRECTORY_DB)),
                              _mongo_directory_store)


def _mongo_directory_store(database: MongoDatabase) -> MongoDirectoryStore:
    from services.auth.adapters.directory_mongo import (  # noqa: PLC0415 - optional extra
        MongoDirectoryStore,
    )

    return MongoDirectoryStore(database)


async def directory_ctx(app: web.Application) -> AsyncIterator[None]:
    """The periodic LDAP sync and the directory's health check; needs DIRECTORY set before."""
    parts = app[DIRECTORY]
    if parts.ldap is not None:
        app[HEALTH].add("ldap", parts.ping_ldap)
        app[JOBS].append(Job("ldap-sync", app[CONFIG].ldap.sync_interval_seconds,
                             parts.ldap.sync_all))
    if any(p.inactive_days for p in app[CONFIG].oidc.values()):
        app[JOBS].append(Job("directory-inactivity", INACTIVITY_CHECK_SECONDS,
                             lambda: suspend_inactive(app[CONFIG], parts.directory)))
    yield


async def suspend_inactive(config: Config, directory: Directory) -> int:
    """Each provider's ``inactive_days`` rule, now (the job ``directory_ctx`` registers)."""
    now = datetime.now(UTC)
    return sum([await directory.suspend_inactive(f"oidc:{name}", days=settings.inactive_days,
                                                 now=now)
                for name, settings in config.oidc.items() if settings.inactive_days])
