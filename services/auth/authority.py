"""The registry's token authority: scopes asked + who asks → a signed token granting the rest.

Partial authorization is not an error (distribution docs/spec/auth/token.md): each scope gets
the intersection of the actions asked and the actions allowed, possibly none, in which case the
scope is left out of the token and the registry answers the client with its own 401/403.

One refusal is an error instead: an admin asking to push into a namespace nobody created gets
a 403 naming it (docker and skopeo print the message), as an admin may know what exists. Anyone
else gets nothing for it, as for a namespace they may not see; the log says why either way.
With ``create_namespace_on_push`` the push creates the namespace first, where
``policy.push_claim`` allows (``IdentityService.create_namespace_for_push``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from services.auth.cache import ReadCache
from services.auth.keys import SigningKey
from services.auth.models import Namespace
from services.auth.policy import (
    NOTHING_READABLE,
    Access,
    Policy,
    Principal,
    ReadScope,
    Role,
    catalog_allowed,
    grant,
    manages,
    repository_actions,
)
from services.auth.ports import AuthStore, NamespaceRecord
from services.auth.scopes import Scope, parse_scopes
from services.auth.tokens import Grant, IssuedToken, RecentTokens, issue_token
from services.core.errors import Conflict, DyError, Forbidden
from services.core.reference import is_valid_repository, namespace_of, repository_path

__all__ = ["SERVICE_PRINCIPAL", "NamespaceCreator", "TokenAuthority", "TokenSettings"]

log = logging.getLogger("dockyard.token")

# Creates the namespace a push names, for the pusher, or raises a DyError saying why not.
NamespaceCreator = Callable[[Principal, str, Policy], Awaitable[object]]

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
        create_namespace: NamespaceCreator | None = None,
    ) -> None:
        self.store = store
        self._key = key
        self.settings = settings
        self._cache = cache or ReadCache(0)
        self._create_namespace = create_namespace
        self._recent = RecentTokens()

    async def _namespaces(
        self, account: str | None, names: tuple[str, ...] | None
    ) -> list[NamespaceRecord]:
        return await self._cache.get(("namespaces", account, names),
                                     lambda: self.store.namespaces(account, names))

    async def grants(self, principal: Principal, scopes: Sequence[Scope]) -> list[Grant]:
        """What ``principal`` gets of each scope asked; scopes granted nothing are left out."""
        return list((await self._judge(principal, scopes))[0])

    async def authorize(self, principal: Principal, scopes: Sequence[Scope]) -> list[Grant]:
        """``grants`` for a token request, which may create the namespaces pushes name.

        Raises Forbidden when an admin asks to push into a namespace that does not exist and
        may not be created (module docstring).
        """
        granted, missing = await self._judge(principal, scopes)
        if not missing or principal.kind not in {"user", "bot"} or not principal.enabled:
            return list(granted)
        refused: list[DyError] = []
        for name in sorted(missing):
            try:
                await self._create_missing(principal, name)
            except DyError as exc:
                log.info("push refused", extra={"sub": principal.name, "namespace": name,
                                                "reason": exc.message})
                refused.append(exc)
        if refused and principal.admin:
            raise Forbidden(refused[0].code, refused[0].message)
        if len(refused) < len(missing):
            granted, _ = await self._judge(principal, scopes)
        return list(granted)

    async def _create_missing(self, principal: Principal, name: str) -> None:
        if self._create_namespace is None:
            raise Forbidden("namespace_not_found",
                            f"namespace {name!r} does not exist: create it first (dockyard"
                            " namespace add, POST /api/v1/namespaces), or set [auth]"
                            " create_namespace_on_push")
        try:
            await self._create_namespace(principal, name, self.settings.policy)
        except Conflict as exc:
            if exc.code != "namespace_exists":
                raise
            # A concurrent request created it first: it exists, which is all this one needs.

    async def _judge(
        self, principal: Principal, scopes: Sequence[Scope]
    ) -> tuple[tuple[Grant, ...], frozenset[str]]:
        """The grants, and the namespaces that do not exist which a scope asks to push into.

        The answer depends only on the principal (all of it: admin, enabled, credential), the
        scopes, the namespace records read through the same cache and the static policy, so it
        is cached beside those records and dropped with them on every identity change (a
        namespace created at push time too): docker asks for the same scopes over and over.
        Nothing here may have an effect, since a cached answer skips it (``authorize`` creates).
        """
        return await self._cache.get(("grants", principal, tuple(scopes)),
                                     lambda: self._decide(principal, scopes))

    async def _decide(
        self, principal: Principal, scopes: Sequence[Scope]
    ) -> tuple[tuple[Grant, ...], frozenset[str]]:
        paths = {s: _repository(s.name) for s in scopes if s.type == "repository"}
        wanted = tuple(sorted({namespace_of(p) for p in paths.values() if p is not None}))
        records = await self._namespaces(principal.name, wanted) if wanted else []
        access = {namespace.name: _access(namespace, role) for namespace, role in records}
        missing = {namespace_of(path) for scope, path in paths.items()
                   if path is not None and "push" in scope.actions
                   and namespace_of(path) not in access}
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
        return tuple(granted), frozenset(missing)

    async def read_scope(self, principal: Principal) -> ReadScope:
        """What ``principal`` may read (the namespaces it may pull from) and manage: the one
        visibility decision of every read path (API, search, scans, portal, event streams)."""
        if not principal.enabled:
            return NOTHING_READABLE
        if principal.admin:
            return ReadScope(None, None)
        records = await self._namespaces(principal.name, None)
        policy = self.settings.policy
        readable = frozenset(
            namespace.name for namespace, role in records
            if "pull" in repository_actions(principal, _access(namespace, role), policy))
        managed = frozenset(namespace.name for namespace, role in records
                            if manages(principal, _access(namespace, role)))
        return ReadScope(readable, managed & readable)

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
