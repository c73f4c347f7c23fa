"""What the auth service needs from its store (SQLite by default, MongoDB at scale)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Protocol

from services.auth.models import (
    AppToken,
    ExternalAccount,
    LoginState,
    Member,
    Namespace,
    RefreshToken,
    Team,
    User,
)
from services.auth.policy import Role, Visibility
from services.core.dump import Dumped, RecordSpec

__all__ = [
    "AUTH_RECORDS",
    "DIRECTORY_RECORDS",
    "AuthStore",
    "Catalog",
    "DirectoryStore",
    "NamespaceRecord",
]

# A namespace and the asking account's role in its team (None: not a member).
NamespaceRecord = tuple[Namespace, Role | None]

# What AuthStore.dump yields and load takes, in this order; times are epoch seconds.
AUTH_RECORDS: RecordSpec = {
    "user": {"name": "str", "email": "str", "kind": ("user", "bot"), "password_hash": "str?",
             "admin": "bool", "enabled": "bool", "failed_logins": "int", "locked_until": "num?",
             "credential_epoch": "int", "created_at": "num", "owner_team": "str?"},
    "team": {"name": "str", "description": "str", "created_at": "num"},
    "member": {"team": "str", "user": "str", "role": ("viewer", "contributor", "owner")},
    "namespace": {"name": "str", "kind": ("global", "personal", "team"),
                  "visibility": ("private", "protected", "public"), "description": "str",
                  "team": "str?", "owner": "str?", "created_at": "num"},
    "app_token": {"id": "str", "secret_hash": "hex", "user": "str", "label": "str",
                  "created_at": "num", "expires_at": "num?", "last_used_at": "num?",
                  "revoked_at": "num?"},
    "refresh_token": {"secret_hash": "hex", "family": "str", "generation": "int",
                      "user": "str", "client_id": "str", "credential": "str",
                      "credential_epoch": "int", "created_at": "num", "expires_at": "num",
                      "last_used_at": "num?", "revoked_at": "num?"},
}

# What DirectoryStore.dump yields and load takes, in this order: the links (an empty
# external_id is an account created before its first sign-in), then the memberships the group
# sync made, one record per user and team.
DIRECTORY_RECORDS: RecordSpec = {
    "account": {"name": "str", "source": "str", "external_id": "str", "suspended": "bool",
                "seen_at": "num?"},
    "managed_member": {"user": "str", "team": "str", "role": ("viewer", "contributor", "owner")},
}


class AuthStore(Protocol):
    async def ping(self) -> None:
        """Raise if the store cannot be reached (the health check)."""
        ...

    # accounts ------------------------------------------------------------------------------
    async def create_user(self, user: User, password_hash: str | None) -> None:
        """Create the account (and, for a person, their private personal namespace).

        Raises Conflict when the name is taken by an account or a namespace, NotFound when a
        bot's ``owner_team`` does not exist.
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
        bump_epoch: bool = False,
    ) -> User:
        """Make the changes given, and with ``bump_epoch`` increment ``credential_epoch`` in
        the same write. Raises NotFound."""
        ...

    async def set_login_state(
        self, name: str, state: LoginState, *, expected: LoginState | None
    ) -> bool:
        """Set the account's failure count and lock in one atomic write; with ``expected``,
        only if they are still that (compare-and-set: services/auth/lockout.py decides, the
        store only persists). False if nothing was set: they changed, or no such account."""
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

    async def create_refresh_token(self, token: RefreshToken, secret_hash: bytes) -> None: ...

    async def find_refresh_token(self, secret_hash: bytes) -> tuple[RefreshToken, User] | None:
        """The token with this hash, revoked ones too, and its account, in one read."""
        ...

    async def rotate_refresh_token(
        self, presented: bytes, successor: RefreshToken, successor_hash: bytes, at: datetime
    ) -> bool:
        """If the token ``presented`` is live: mark it used ``at``, revoke every other live
        token of its family, and store ``successor``. False, and nothing changed, when it is
        not live (any more)."""
        ...

    async def revoke_refresh_family(self, family: str) -> int:
        """Revoke every live token of the family; returns how many."""
        ...

    async def revoke_refresh_tokens(self, user: str, credential: str) -> int:
        """Revoke the user's live refresh tokens minted with ``credential``; how many."""
        ...

    # export and import (dockyard export / import) ------------------------------------------
    def dump(self) -> AsyncIterator[Dumped]:
        """Every record (AUTH_RECORDS), each kind after the kinds it refers to."""
        ...

    async def is_empty(self) -> bool:
        """True when the store holds nothing but the global namespace."""
        ...

    async def load(self, records: Sequence[Dumped]) -> None:
        """Write dumped records as they are, in order (the global namespace is updated)."""
        ...


class DirectoryStore(Protocol):
    """Which accounts come from a directory or provider, and which memberships its group sync
    made (so it never touches the ones added by hand). Kept apart from AuthStore: only sign-in
    and the sync use it."""

    async def link(self, account: ExternalAccount) -> None:
        """Create or replace the account's link."""
        ...

    async def account(self, name: str) -> ExternalAccount | None: ...

    async def by_external_id(self, source: str, external_id: str) -> ExternalAccount | None: ...

    async def accounts(self, source: str) -> list[ExternalAccount]: ...

    async def managed(self, user: str) -> dict[str, Role]:
        """Team → role, for the memberships of ``user`` that the sync made."""
        ...

    async def set_managed(self, user: str, memberships: dict[str, Role]) -> None:
        """Replace the memberships of ``user`` that the sync manages."""
        ...

    # export and import (dockyard export / import) ------------------------------------------
    def dump(self) -> AsyncIterator[Dumped]:
        """Every record (DIRECTORY_RECORDS): accounts by name, then managed memberships by
        user and team, so every adapter dumps the same sequence."""
        ...

    async def is_empty(self) -> bool:
        """True when the store holds no link and no managed membership."""
        ...

    async def load(self, records: Sequence[Dumped]) -> None:
        """Write dumped records as they are, in one transaction."""
        ...


class Catalog(Protocol):
    """What the auth service reads of the catalog, which services/ingest owns: the process
    that runs auth wires ingest's reader in (services/ingest/reader.py)."""

    async def repository_count(self, namespace: str) -> int:
        """How many repositories the catalog holds in ``namespace``."""
        ...
