"""What the auth service needs from its store (SQLite by default, MongoDB at scale)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from services.auth.models import AppToken, Member, Namespace, Team, User
from services.auth.policy import Role, Visibility

__all__ = ["AuthStore", "NamespaceRecord"]

# A namespace and the asking account's role in its team (None: not a member).
NamespaceRecord = tuple[Namespace, Role | None]


class AuthStore(Protocol):
    # accounts ------------------------------------------------------------------------------
    async def create_user(self, user: User, password_hash: str | None) -> None:
        """Create the account (and, for a person, their private personal namespace).

        Raises Conflict when the name is taken by an account or a namespace.
        """
        ...

    async def get_user(self, name: str) -> tuple[User, str | None] | None:
        """The account and its password hash."""
        ...

    async def list_users(self, *, after: str | None, limit: int) -> list[User]: ...

    async def update_user(
        self,
        name: str,
        *,
        email: str | None = None,
        admin: bool | None = None,
        enabled: bool | None = None,
        password_hash: str | None = None,
    ) -> User:
        """Raises NotFound."""
        ...

    async def record_login(
        self, name: str, *, success: bool, max_failures: int, lock_until: datetime
    ) -> User | None:
        """Reset the failure count, or count a failure and lock at ``max_failures``."""
        ...

    # teams ---------------------------------------------------------------------------------
    async def create_team(self, team: Team, owner: str) -> None: ...

    async def get_team(self, name: str) -> Team | None: ...

    async def list_teams(self, *, member: str | None) -> list[Team]: ...

    async def members(self, team: str) -> list[Member]: ...

    async def set_member(self, team: str, user: str, role: Role) -> Role | None:
        """Add or change a membership; returns the previous role."""
        ...

    async def remove_member(self, team: str, user: str) -> Role | None:
        """Returns the role the member had, None if they were not one."""
        ...

    async def roles_of(self, user: str) -> dict[str, Role]:
        """Team name → the user's role, for every team the user is in."""
        ...

    # namespaces ----------------------------------------------------------------------------
    async def create_namespace(self, namespace: Namespace) -> None: ...

    async def update_namespace(
        self,
        name: str,
        *,
        visibility: Visibility | None = None,
        description: str | None = None,
        team: str | None = None,
    ) -> Namespace: ...

    async def namespaces(
        self, account: str | None, names: Sequence[str] | None = None
    ) -> list[NamespaceRecord]:
        """The namespaces named (all when None), each with ``account``'s role in its team."""
        ...

    # application and refresh tokens --------------------------------------------------------
    async def create_app_token(
        self, token: AppToken, secret_hash: bytes
    ) -> None: ...

    async def find_app_token(self, secret_hash: bytes) -> tuple[AppToken, User] | None:
        """The token with this hash and its account, in one read (the token endpoint's hot
        path)."""
        ...

    async def touch_app_token(self, token_id: str, at: datetime) -> None: ...

    async def list_app_tokens(self, user: str) -> list[AppToken]: ...

    async def revoke_app_token(self, user: str, label: str) -> AppToken | None: ...

    async def create_refresh_token(
        self, secret_hash: bytes, user: str, client_id: str, at: datetime
    ) -> None: ...

    async def find_refresh_token(self, secret_hash: bytes) -> str | None:
        """The user an unrevoked refresh token belongs to."""
        ...

    async def revoke_refresh_tokens(self, user: str) -> int: ...
