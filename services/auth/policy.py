"""Who may do what to a repository: Portus' model as one pure decision.

Namespaces are personal (a user's own), team-owned, or the global namespace (names without
``/``). Team roles: ``viewer`` pulls; ``contributor`` also pushes (and deletes when
``delete_contributors``); ``owner`` also deletes and manages the team. Visibility decides who
else pulls: ``public`` anyone (anonymous too when ``anonymous_pull``), ``protected`` anyone
signed in, ``private`` members only. Admins may do everything in a namespace that exists.
``push_policy`` limits pushes: ``allow-teams`` (personal and team namespaces),
``allow-personal`` (personal only), ``admin-only``.

A namespace nobody created is nobody's: nothing is pushed there, by admins neither, or whoever
created the name later would silently inherit what was pushed. With ``create_namespace_on_push``
the push creates it first (``push_claim`` says for whom); admins still pull and delete what is
there already (repositories pushed before this rule).

Who may read what follows from pulling: a namespace's repositories, tags, scans, search hits
and activity are seen by whoever may pull from it, and by nobody else (``ReadScope``). Who
pushed from where (addresses, user agents) is for the namespace's managers: admins, the user
of a personal namespace, the owners of the team owning it (``manages``).

Bots belong to an owner: a team, or the administrators (``may_manage_bot``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "ANONYMOUS",
    "NOTHING_READABLE",
    "Access",
    "Credential",
    "Policy",
    "Principal",
    "ReadScope",
    "Role",
    "Visibility",
    "catalog_allowed",
    "grant",
    "manages",
    "may_manage_bot",
    "push_claim",
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
    create_namespace_on_push: bool = False


def repository_actions(principal: Principal, access: Access, policy: Policy) -> frozenset[str]:
    """The actions ``principal`` may take on a repository of the namespace described."""
    if not principal.enabled:
        return NOTHING
    if principal.kind == "service":
        # Dockyard's own identity reads manifests and layers; it never writes.
        return frozenset({PULL})
    if principal.admin:
        return frozenset({PULL, PUSH, DELETE}) if access.exists else frozenset({PULL, DELETE})
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


def push_claim(
    principal: Principal, team_role: Role | None, policy: Policy
) -> Literal["admins", "team"] | None:
    """Who owns the namespace a push creates (``create_namespace_on_push``); None: nobody, the
    push is refused.

    An admin's push creates a namespace no team owns, which only admins manage until one of
    them hands it to a team. Anyone else's push creates only the namespace of the team of the
    same name, which they own (``team_role`` is their role in that team), where push_policy
    lets teams push: what they could create through the API themselves, nothing more.
    """
    if not (policy.create_namespace_on_push and principal.enabled):
        return None
    if principal.kind not in {"user", "bot"}:
        return None
    if principal.admin:
        return "admins"
    if policy.push_policy == "allow-teams" and team_role == "owner":
        return "team"
    return None
def manages(principal: Principal, access: Access) -> bool:
    """Whether ``principal`` manages the namespace described: admins, the user of a personal
    namespace and the owners of the owning team."""
    if not principal.enabled:
        return False
    if principal.admin:
        return True
    return access.exists and (_owns(principal, access) or access.role == "owner")


@dataclass(frozen=True, slots=True)
class ReadScope:
    """What a principal may read: the namespaces it may pull from (``readable``) and those it
    manages (``managed``), each None for all of them (admins)."""

    readable: frozenset[str] | None
    managed: frozenset[str] | None

    @property
    def everything(self) -> bool:
        """Admins: every namespace, and what concerns no namespace (accounts, teams)."""
        return self.readable is None

    def sees(self, namespace: str) -> bool:
        return self.readable is None or namespace in self.readable

    def manages(self, namespace: str) -> bool:
        return self.managed is None or namespace in self.managed


NOTHING_READABLE = ReadScope(frozenset(), frozenset())


def catalog_allowed(principal: Principal) -> bool:
    """``registry:catalog:*`` lists every repository: admins and Dockyard itself only."""
    return principal.enabled and (principal.admin or principal.kind == "service")


def grant(asked: frozenset[str], allowed: frozenset[str]) -> frozenset[str]:
    """The intersection of asked and allowed; ``*`` asks for everything allowed."""
    if "*" in asked:
        return allowed
    return asked & allowed


def may_manage_bot(
    principal: Principal, owner_team: str | None, roles: Mapping[str, Role]
) -> bool:
    """Whether ``principal`` (whose team roles are ``roles``) manages a bot owned by
    ``owner_team`` (None: by the administrators): its memberships, its tokens.

    Admins manage every bot; otherwise only a person who owns the owning team. Being in a team
    the bot belongs to gives nothing: a bot joins another team only by its owner's act, so a
    team owner cannot capture a bot by adding it to their team. Bots manage no bot (not even
    with an owner role), so a bot's token cannot mint tokens for its siblings.
    """
    if not principal.enabled:
        return False
    if principal.admin:
        return True
    return (principal.kind == "user" and owner_team is not None
            and roles.get(owner_team) == "owner")


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
