"""Who may do what to a repository: Portus' model as one pure decision.

Namespaces are personal (a user's own), team-owned, or the global namespace (names without
``/``). Team roles: ``viewer`` pulls; ``contributor`` also pushes (and deletes when
``delete_contributors``); ``owner`` also deletes and manages the team. Visibility decides who
else pulls: ``public`` anyone (anonymous too when ``anonymous_pull``), ``protected`` anyone
signed in, ``private`` members only. Admins may do everything. ``push_policy`` limits pushes:
``allow-teams`` (personal and team namespaces), ``allow-personal`` (personal only),
``admin-only``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "ANONYMOUS",
    "Access",
    "Credential",
    "Policy",
    "Principal",
    "Role",
    "Visibility",
    "catalog_allowed",
    "grant",
    "repository_actions",
]

Role = Literal["viewer", "contributor", "owner"]
Visibility = Literal["private", "protected", "public"]
PrincipalKind = Literal["anonymous", "user", "bot", "service"]
Credential = Literal["none", "password", "app_token", "refresh_token", "session", "internal"]

PULL, PUSH, DELETE = "pull", "push", "delete"
NOTHING: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking, once authenticated. ``name`` is None for anonymous callers."""

    name: str | None
    kind: PrincipalKind
    admin: bool = False
    enabled: bool = True
    credential: Credential = "none"
    # Which one: the application token's id (what refresh tokens minted with it are bound to).
    # Not part of the identity: the same account with another token is the same principal.
    credential_id: str | None = field(default=None, compare=False)


ANONYMOUS = Principal(None, "anonymous")


@dataclass(frozen=True, slots=True)
class Access:
    """What the decision needs to know about a repository's namespace, for this principal."""

    exists: bool
    kind: Literal["global", "personal", "team"] = "team"
    visibility: Visibility = "private"
    owner: str | None = None  # the user of a personal namespace
    role: Role | None = None  # the principal's role in the team owning the namespace


@dataclass(frozen=True, slots=True)
class Policy:
    anonymous_pull: bool = True
    delete_contributors: bool = False
    push_policy: Literal["allow-teams", "allow-personal", "admin-only"] = "allow-teams"


def repository_actions(principal: Principal, access: Access, policy: Policy) -> frozenset[str]:
    """The actions ``principal`` may take on a repository of the namespace described."""
    if not principal.enabled:
        return NOTHING
    if principal.kind == "service":
        # Dockyard's own identity reads manifests and layers; it never writes.
        return frozenset({PULL})
    if principal.admin:
        return frozenset({PULL, PUSH, DELETE})
    if not access.exists:
        return NOTHING
    actions: set[str] = set()
    if _may_pull(principal, access, policy):
        actions.add(PULL)
    if _may_push(principal, access, policy):
        actions.add(PUSH)
    if _may_delete(principal, access, policy):
        actions.add(DELETE)
    return frozenset(actions)


def catalog_allowed(principal: Principal) -> bool:
    """``registry:catalog:*`` lists every repository: admins and Dockyard itself only."""
    return principal.enabled and (principal.admin or principal.kind == "service")


def grant(asked: frozenset[str], allowed: frozenset[str]) -> frozenset[str]:
    """The intersection of asked and allowed; ``*`` asks for everything allowed."""
    if "*" in asked:
        return allowed
    return asked & allowed


def _owns(principal: Principal, access: Access) -> bool:
    return access.kind == "personal" and principal.kind == "user" and (
        principal.name is not None and principal.name == access.owner
    )


def _may_pull(principal: Principal, access: Access, policy: Policy) -> bool:
    if _owns(principal, access) or access.role is not None:
        return True
    if access.visibility == "public":
        return principal.kind != "anonymous" or policy.anonymous_pull
    if access.visibility == "protected":
        return principal.kind != "anonymous"
    return False


def _may_push(principal: Principal, access: Access, policy: Policy) -> bool:
    if policy.push_policy == "admin-only" or access.kind == "global":
        return False
    if _owns(principal, access):
        return True
    return policy.push_policy == "allow-teams" and access.role in {"contributor", "owner"}


def _may_delete(principal: Principal, access: Access, policy: Policy) -> bool:
    if access.kind == "global":
        return False
    if _owns(principal, access) or access.role == "owner":
        return True
    return policy.delete_contributors and access.role == "contributor"
