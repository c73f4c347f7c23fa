"""Identity records: accounts, teams, namespaces, application tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from services.auth.policy import Credential, Principal, Role, Visibility

__all__ = [
    "AccountKind",
    "AppToken",
    "ExternalAccount",
    "LoginState",
    "Member",
    "Namespace",
    "NamespaceKind",
    "RefreshToken",
    "Team",
    "User",
]

AccountKind = Literal["user", "bot"]
NamespaceKind = Literal["global", "personal", "team"]


@dataclass(frozen=True, slots=True)
class User:
    """A person or a bot. Bots have no password and no personal namespace.

    ``owner_team``: the team that owns a bot (it manages the bot's memberships and tokens);
    None for a bot owned by the administrators, and always None for a person.
    ``credential_epoch`` counts the times the account's existing credentials stopped counting
    (a password change, disabling, admin demotion, lockout, "sign out everywhere"): sessions,
    refresh tokens and verified passwords remember the epoch they were made in and count only
    while it is current.
    """

    name: str
    email: str
    admin: bool
    enabled: bool
    kind: AccountKind = "user"
    failed_logins: int = 0
    locked_until: datetime | None = None
    owner_team: str | None = None
    credential_epoch: int = 0

    @property
    def login_state(self) -> LoginState:
        return LoginState(self.failed_logins, self.locked_until)

    def principal(self, credential: Credential, credential_id: str | None = None) -> Principal:
        """This account as the caller, proven by ``credential`` (``credential_id``: which
        application token)."""
        return Principal(self.name, self.kind, admin=self.admin, enabled=self.enabled,
                         credential=credential, credential_id=credential_id)


@dataclass(frozen=True, slots=True)
class LoginState:
    """An account's password failures in a row (each attempt counts until it succeeds) and
    the lock they earned (services/auth/lockout.py)."""

    failures: int = 0
    locked_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Team:
    name: str
    description: str


@dataclass(frozen=True, slots=True)
class Member:
    team: str
    user: str
    role: Role


@dataclass(frozen=True, slots=True)
class Namespace:
    """``name`` is "" for the global namespace (repositories without ``/``)."""

    name: str
    kind: NamespaceKind
    visibility: Visibility
    description: str
    team: str | None = None  # owning team of a team namespace
    owner: str | None = None  # user of a personal namespace


@dataclass(frozen=True, slots=True)
class AppToken:
    id: str
    user: str
    label: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked: bool


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """One refresh token of a family: the chain of tokens that rotation makes from one sign-in
    (services/auth/refresh.py). ``credential`` is what the sign-in used: ``password``, or the
    id of the application token; ``credential_epoch`` the account's epoch then. The family
    ends at ``expires_at`` whatever its use."""

    family: str
    generation: int
    user: str
    client_id: str
    credential: str
    credential_epoch: int
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None = None
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class ExternalAccount:
    """An account whose identity comes from a directory or a sign-in provider.

    ``source`` is ``ldap`` or ``oidc:<provider>``; ``external_id`` the LDAP DN or the OIDC
    ``sub`` (empty for an account pre-created before its first sign-in). ``suspended``: the
    directory no longer knows it (or the provider has not vouched for it for too long), so
    Dockyard disabled it (and re-enables it if it returns; an account disabled by an admin is
    never re-enabled by the directory). ``seen_at``: when the directory or provider last
    vouched for it (a sign-in; None: not since this was recorded).
    """

    name: str
    source: str
    external_id: str
    suspended: bool = False
    seen_at: datetime | None = None
