"""The registry's token authority: scopes asked + who asks → a signed token granting the rest.

Partial authorization is not an error (distribution docs/spec/auth/token.md): each scope gets
the intersection of the actions asked and the actions allowed, possibly none, in which case the
scope is left out of the token and the registry answers the client with its own 401/403.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from services.auth.cache import ReadCache
from services.auth.keys import SigningKey
from services.auth.models import Namespace
from services.auth.policy import (
    Access,
    Policy,
    Principal,
    Role,
    catalog_allowed,
    grant,
    repository_actions,
)
from services.auth.ports import AuthStore, NamespaceRecord
from services.auth.scopes import Scope, parse_scopes
from services.auth.tokens import Grant, IssuedToken, RecentTokens, issue_token
from services.core.reference import is_valid_repository, namespace_of, repository_path

__all__ = ["SERVICE_PRINCIPAL", "TokenAuthority", "TokenSettings"]

# Dockyard's own identity (catalog consumer, sync, scanner). Its name cannot be an account's.
SERVICE_PRINCIPAL = Principal("dockyard:internal", "service", credential="internal")
# Internal tokens live briefly: they are asked for per registry challenge and cached by the client.
SERVICE_TOKEN_TTL = 120


@dataclass(frozen=True, slots=True)
class TokenSettings:
    issuer: str
    service: str
    ttl: int
    policy: Policy


class TokenAuthority:
    def __init__(
        self,
        store: AuthStore,
        key: SigningKey,
        settings: TokenSettings,
        cache: ReadCache | None = None,
    ) -> None:
        self.store = store
        self._key = key
        self.settings = settings
        self._cache = cache or ReadCache(0)
        self._recent = RecentTokens()

    async def _namespaces(
        self, account: str | None, names: tuple[str, ...] | None
    ) -> list[NamespaceRecord]:
        return await self._cache.get(("namespaces", account, names),
                                     lambda: self.store.namespaces(account, names))

    async def grants(self, principal: Principal, scopes: Sequence[Scope]) -> list[Grant]:
        """What ``principal`` gets of each scope asked; scopes granted nothing are left out.

        The answer depends only on the principal (all of it: admin, enabled, credential), the
        scopes, the namespace records read through the same cache and the static policy, so it
        is cached beside those records and dropped with them on every identity change: docker
        asks for the same scopes over and over.
        """
        return list(await self._cache.get(("grants", principal, tuple(scopes)),
                                          lambda: self._decide(principal, scopes)))

    async def _decide(self, principal: Principal, scopes: Sequence[Scope]) -> tuple[Grant, ...]:
        paths = {s: _repository(s.name) for s in scopes if s.type == "repository"}
        wanted = tuple(sorted({namespace_of(p) for p in paths.values() if p is not None}))
        records = await self._namespaces(principal.name, wanted) if wanted else []
        access = {namespace.name: _access(namespace, role) for namespace, role in records}
        granted = []
        for scope in scopes:
            allowed: frozenset[str] = frozenset()
            if scope.type == "repository" and (path := paths[scope]) is not None:
                namespace_access = access.get(namespace_of(path), Access(exists=False))
                allowed = repository_actions(principal, namespace_access, self.settings.policy)
            elif scope.type == "registry" and scope.name == "catalog":
                allowed = frozenset({"*"}) if catalog_allowed(principal) else frozenset()
            actions = grant(scope.actions, allowed)
            if actions:
                granted.append(Grant(scope.type, scope.name, actions))
        return tuple(granted)

    async def readable_namespaces(self, principal: Principal) -> set[str] | None:
        """The namespaces whose repositories ``principal`` may pull; None means all of them."""
        if principal.admin:
            return None
        records = await self._namespaces(principal.name, None)
        return {
            namespace.name for namespace, role in records
            if "pull" in repository_actions(principal, _access(namespace, role),
                                            self.settings.policy)
        }

    async def issue(self, principal: Principal, scopes: Sequence[Scope]) -> IssuedToken:
        return self.sign(principal, await self.grants(principal, scopes))

    async def service_token(self, scope: str) -> str:
        """A short-lived token for Dockyard's own registry calls, with the least access asked
        for: pull on a repository, or the catalog (for sync)."""
        principal = SERVICE_PRINCIPAL
        grants = await self.grants(principal, parse_scopes([scope]))
        return self.sign(principal, grants, SERVICE_TOKEN_TTL).token

    def sign(
        self, principal: Principal, grants: list[Grant], ttl: int | None = None
    ) -> IssuedToken:
        """A token granting ``grants``; the same one again within its second (RecentTokens)."""
        now, subject, ttl = int(time.time()), principal.name or "", ttl or self.settings.ttl
        return self._recent.get(now, subject, tuple(grants), ttl, lambda: issue_token(
            self._key,
            issuer=self.settings.issuer,
            audience=self.settings.service,
            subject=subject,
            grants=grants,
            ttl=ttl,
            now=now,
        ))


def _repository(name: str) -> str | None:
    """The repository a scope's name is judged as.

    The registry matches a token's entries to its repositories by name, literally, and namespace
    names may hold dots: ``john.doe/app`` is john.doe's repository, not ``app`` on a registry
    host ``john.doe`` (read that way, it would be judged by the global namespace while the
    entry granted ``john.doe/app``). Only a name no repository can have, such as one with a
    ``host:port/`` prefix, is read without its host.
    """
    return name if is_valid_repository(name) else repository_path(name)


def _access(namespace: Namespace, role: Role | None) -> Access:
    return Access(exists=True, kind=namespace.kind, visibility=namespace.visibility,
                  owner=namespace.owner, role=role)
