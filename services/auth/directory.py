"""Accounts that come from a directory (LDAP) or a sign-in provider (OIDC, GitHub).

``Directory.apply`` is the one place such an identity becomes (or updates) a Dockyard account:
created on first sign-in (or pre-created by an admin so it can join teams before then), its
email and admin flag taken from the directory, and its team memberships synced from its groups:

- ``plan_memberships`` (pure) turns the groups, the configured group → team mappings and the
  memberships the sync made before into changes. The sync **adds and removes** (Portus only
  added), and it never touches a membership someone added by hand unless
  ``manage_manual_members`` says so: ``DirectoryStore`` records which memberships it made.
- Every change is published through the identity audit log (``team.add_member`` …,
  actor ``ldap`` or ``oidc:<provider>``), so it lands in the activity log.

An account is linked to what its source says identifies the person, not to a user name: an
LDAP entry's ``[ldap] id_attributes`` value (its DN where it has none), the provider's OIDC
``sub``, the GitHub user id. A pre-created account is claimed by name only where the directory
assigns names (LDAP), else by the verified email the admin gave it (``may_claim``).

A user disabled in Dockyard stays disabled whatever the directory says. A user the directory
no longer knows (another entry under their uid, a GitHub user no longer allowed, a provider's
user without a sign-in for ``inactive_days``) is *suspended*: disabled (so their app tokens
stop working, and their sessions and refresh tokens end with the credential epoch), marked so,
and enabled again only if the directory knows them again.

``LdapLogins`` is what the Authenticator asks about a password of an account without a local
password; it runs the sync at every verified sign-in and ``sync_all`` runs it periodically.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from services.auth.audit import Audit
from services.auth.credentials import ends_credentials
from services.auth.ldap import DirectoryEntry, LdapDirectory, normalize_dn
from services.auth.models import ExternalAccount, User
from services.auth.policy import Principal, Role
from services.auth.ports import AuthStore, Catalog, DirectoryStore
from services.core.config import GroupMapping
from services.core.errors import Conflict, Forbidden, Invalid, NotFound
from services.core.reference import is_valid_namespace

__all__ = [
    "LDAP_SOURCE",
    "Directory",
    "Identity",
    "IdentityChanged",
    "LdapLogins",
    "MembershipChange",
    "SyncRules",
    "desired_memberships",
    "ldap_rules",
    "may_claim",
    "plan_memberships",
]

log = logging.getLogger("dockyard.auth.directory")

LDAP_SOURCE = "ldap"
MAX_EMAIL = 254  # RFC 5321's limit on a forward path, less the angle brackets
_RANK: dict[Role, int] = {"viewer": 0, "contributor": 1, "owner": 2}


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a directory or provider says signed in. ``groups`` are compared exactly, so LDAP
    DNs come normalized (``normalize_dn``).

    ``movable``: the external id may change for the same person. An LDAP entry's DN changes
    when it moves, while the directory keeps user names unique; an OIDC ``sub`` never changes
    while ``preferred_username`` and the like are not unique (OIDC Core §5.7), so a provider
    account is only ever the one ``sub`` it was first linked to.
    """

    source: str
    external_id: str
    username: str
    email: str
    groups: frozenset[str]
    movable: bool = False
    # The provider vouches for ``email`` (OIDC ``email_verified``, GitHub's verified emails).
    email_verified: bool = False
    # The source's user names are assigned by its administrators and unique (LDAP uids), so a
    # pre-created account is claimed by its name; a provider's names are the person's choice.
    names_assigned: bool = False
    # Ids the account may have been linked under before (an LDAP DN, before stable entry
    # ids): accepted once, and the link moves to ``external_id``.
    previous_ids: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class SyncRules:
    mappings: tuple[GroupMapping, ...] = ()
    admin_group: str = ""  # "" leaves the admin flag alone
    manage_manual_members: bool = False
    auto_onboard: bool = True

    @property
    def teams(self) -> set[str]:
        return {mapping.team for mapping in self.mappings}


@dataclass(frozen=True, slots=True)
class MembershipChange:
    kind: Literal["add", "change", "remove"]
    team: str
    role: Role | None = None
    previous: Role | None = None


def desired_memberships(groups: Iterable[str], mappings: Sequence[GroupMapping]) -> dict[str, Role]:
    """Team → the highest role any of ``groups`` maps to."""
    held = set(groups)
    desired: dict[str, Role] = {}
    for mapping in mappings:
        if mapping.group in held:
            current = desired.get(mapping.team)
            if current is None or _RANK[mapping.role] > _RANK[current]:
                desired[mapping.team] = mapping.role
    return desired


def plan_memberships(
    desired: dict[str, Role],
    current: dict[str, Role],
    managed: dict[str, Role],
    *,
    mapped_teams: set[str],
    manage_manual: bool,
) -> tuple[list[MembershipChange], dict[str, Role]]:
    """The changes that make ``current`` (team → role now) follow ``desired``, and the
    memberships the sync manages afterwards.

    A membership is the sync's when it made it (``managed``) or when ``manage_manual`` is on;
    the sync adds missing ones, changes roles and removes what no mapped group grants any more
    (including teams whose mapping was dropped from the config), and leaves hand-made
    memberships alone otherwise.
    """
    changes: list[MembershipChange] = []
    now_managed: dict[str, Role] = {}
    for team, role in sorted(desired.items()):
        before = current.get(team)
        ours = team in managed or manage_manual
        if before is None:
            changes.append(MembershipChange("add", team, role))
        elif before != role and ours:
            changes.append(MembershipChange("change", team, role, before))
        elif not ours:
            continue  # added by hand: not the sync's to change, nor later to remove
        now_managed[team] = role
    for team in sorted((set(managed) | (mapped_teams if manage_manual else set())) - set(desired)):
        before = current.get(team)
        if before is not None:
            changes.append(MembershipChange("remove", team, None, before))
    return changes, now_managed


@dataclass
class Directory:
    accounts: AuthStore
    links: DirectoryStore
    audit: Audit
    # An account comes with its personal namespace: the catalog says whether repositories
    # were pushed under that name before namespaces had to exist.
    catalog: Catalog
    # Teams already warned about (missing), so a periodic sync does not repeat itself.
    _warned: set[str] = field(default_factory=set)
    # One apply at a time per account name in this process: a client's first requests often
    # come in parallel, and must not race to create the same account.
    _locks: weakref.WeakValueDictionary[str, asyncio.Lock] = field(
        default_factory=weakref.WeakValueDictionary)

    async def apply(self, identity: Identity, rules: SyncRules) -> User:
        """Create or update the account ``identity`` stands for and sync its teams.

        Raises Forbidden when the name belongs to another account (a local one, or one of
        another source) or when onboarding is off and no account was pre-created.
        """
        lock = self._locks.setdefault(identity.username, asyncio.Lock())
        async with lock:
            return await self._apply(identity, rules)

    async def _apply(self, identity: Identity, rules: SyncRules) -> User:
        user = await self._account(identity, rules)
        if rules.admin_group:
            admin = rules.admin_group in identity.groups
            if admin != user.admin:
                user = await self.accounts.update_user(
                    user.name, admin=admin, bump_epoch=ends_credentials(user, admin=admin))
                await self._record("user.change_admin", identity.source, user.name,
                                   {"admin": admin})
        if _usable_email(identity.email) and identity.email != user.email:
            user = await self.accounts.update_user(user.name, email=identity.email)
            await self._record("user.change_email", identity.source, user.name, {})
        await self._sync_teams(user.name, identity, rules)
        return user

    async def suspend(self, name: str, source: str, reason: str = "gone from directory") -> None:
        """The directory no longer knows ``name``: disable it, marked as the directory's doing.

        An account already disabled (by an admin) is left as it is and not marked, so the
        directory never enables it again; one an admin enabled while it is still gone from the
        directory is disabled again: for directory accounts the directory decides.
        """
        link = await self.links.account(name)
        found = await self.accounts.get_user(name)
        if link is None or link.source != source or found is None or not found[0].enabled:
            return
        if not link.suspended:
            await self.links.link(replace(link, suspended=True))
        await self.accounts.update_user(
            name, enabled=False, bump_epoch=ends_credentials(found[0], enabled=False))
        await self._record("user.disable", source, name, {"reason": reason})

    async def suspend_inactive(self, source: str, *, days: float, now: datetime) -> int:
        """Suspend the accounts of ``source`` that it has not vouched for (a sign-in) in
        ``days``: an OIDC provider or GitHub never says when someone left, and app tokens
        outlive every sign-in. Returns how many were suspended. An account not seen since
        ``seen_at`` was recorded is counted from now."""
        cutoff = now - timedelta(days=days)
        suspended = 0
        for link in await self.links.accounts(source):
            if not link.external_id or link.suspended:
                continue  # pre-created, never signed in; or already suspended
            if link.seen_at is None:
                await self.links.link(replace(link, seen_at=now))
            elif link.seen_at < cutoff:
                await self.suspend(link.name, source, f"no sign-in for {days:g} days")
                suspended += 1
        return suspended

    async def precreate(self, actor: Principal, name: str, *, source: str, email: str = "") -> User:
        """An account for someone who has not signed in yet, so they can join teams now."""
        if not actor.admin:
            raise Forbidden("forbidden", "this needs an administrator")
        if not is_valid_namespace(name):
            raise Invalid("invalid_user_name", f"{name!r} is not a valid account name")
        if email and not _usable_email(email):
            raise Invalid("invalid_email", "email must look like name@example.com")
        if not email and source != LDAP_SOURCE:
            raise Invalid("email_required", "give the person's email: a sign-in provider's"
                          " user names are their own choice, so the account goes to the first"
                          " sign-in with that verified email (may_claim)")
        user = User(name, email or f"{name}@localhost", admin=False, enabled=True)
        adopted = await self.catalog.repository_count(name)
        await self.accounts.create_user(user, None)
        await self.links.link(ExternalAccount(name, source, ""))
        await self._record("user.create", actor.name, name,
                           {"source": source, "adopted_repositories": adopted}, namespace=name)
        return user

    async def _account(self, identity: Identity, rules: SyncRules) -> User:
        name = identity.username
        link = await self.links.by_external_id(identity.source, identity.external_id)
        if link is not None:
            name = link.name
        else:
            link = await self.links.account(name)
        found = await self.accounts.get_user(name)
        if found is None:
            if not rules.auto_onboard:
                raise Forbidden("not_onboarded", f"there is no Dockyard account {name!r} for"
                                " this sign-in; an admin must create it first")
            if not is_valid_namespace(name):
                raise Forbidden("invalid_user_name", f"the directory's user name {name!r} is"
                                " not a valid Dockyard account name (lowercase letters, digits,"
                                " . _ -)")
            if await self.catalog.repository_count(name):
                # Its personal namespace would take them over: that is an admin's decision
                # (services/auth/identity.py, creating a namespace over repositories).
                raise Forbidden("namespace_has_repositories", f"repositories named {name}/…"
                                f" were pushed before namespaces had to exist; an admin must"
                                f" create the account {name!r} (and so hand them over)")
            email = identity.email if _usable_email(identity.email) else f"{name}@localhost"
            user = User(name, email, admin=False, enabled=True)
            await self.accounts.create_user(user, None)
            await self.links.link(ExternalAccount(name, identity.source, identity.external_id,
                                                  seen_at=datetime.now(UTC)))
            await self._record("user.create", identity.source, name,
                               {"source": identity.source}, namespace=name)
            return user
        user, password_hash = found
        if link is None or link.source != identity.source or password_hash is not None \
                or user.kind != "user":
            raise Forbidden("account_conflict", f"the account {name!r} exists in Dockyard and"
                            f" does not come from {identity.source}; an admin must resolve this")
        if not link.external_id and not may_claim(user, identity):
            raise Forbidden("account_conflict", f"the account {name!r} was created for a"
                            f" {identity.source} identity with the verified email"
                            f" {user.email}, which this sign-in does not have")
        if link.external_id and link.external_id != identity.external_id \
                and not identity.movable and link.external_id not in identity.previous_ids:
            raise IdentityChanged("account_conflict", f"the account {name!r} belongs to"
                                  f" another {identity.source} identity; an admin must resolve"
                                  " this")
        await self.links.link(ExternalAccount(name, identity.source, identity.external_id,
                                              seen_at=datetime.now(UTC)))
        if link.suspended and not user.enabled:
            user = await self.accounts.update_user(name, enabled=True)
            await self._record("user.enable", identity.source, name,
                               {"reason": "back in directory"})
        return user

    async def _sync_teams(self, name: str, identity: Identity, rules: SyncRules) -> None:
        desired = desired_memberships(identity.groups, rules.mappings)
        current = await self.accounts.roles_of(name)
        managed = await self.links.managed(name)
        changes, now_managed = plan_memberships(
            desired, current, managed, mapped_teams=rules.teams,
            manage_manual=rules.manage_manual_members)
        for change in changes:
            if not await self._change(name, change, identity.source):
                # Not done (a missing team, the last owner): keep the old state on record.
                if change.kind == "remove" and change.team in managed:
                    now_managed[change.team] = managed[change.team]
                else:
                    now_managed.pop(change.team, None)
        if now_managed != managed:
            await self.links.set_managed(name, now_managed)

    async def _change(self, name: str, change: MembershipChange, source: str) -> bool:
        team = change.team
        details = {"source": source}
        try:
            if change.kind == "remove" or (change.kind == "change" and change.role != "owner"):
                await self._keep_an_owner(team, name)
            if change.kind == "remove":
                await self.accounts.remove_member(team, name)
                await self._record("team.remove_member", source, name, details, team=team)
                return True
            assert change.role is not None  # noqa: S101 - add and change always carry one
            await self.accounts.set_member(team, name, change.role)
        except NotFound:
            if team not in self._warned:
                self._warned.add(team)
                log.warning("group sync: team does not exist; create it",
                            extra={"team": team, "source": source})
            return False
        except Conflict:
            log.warning("group sync: not removing the last owner",
                        extra={"team": team, "user": name})
            return False
        kind = "team.add_member" if change.kind == "add" else "team.change_member_role"
        details = {**details, "role": change.role or ""}
        if change.previous is not None:
            details["previous"] = change.previous
        await self._record(kind, source, name, details, team=team)
        return True

    async def _keep_an_owner(self, team: str, leaving: str) -> None:
        owners = {m.user for m in await self.accounts.members(team) if m.role == "owner"}
        if owners == {leaving}:
            raise Conflict("last_owner", f"{leaving!r} is the last owner of {team!r}")

    async def _record(self, kind: str, actor: str | None, subject: str,
                      details: Mapping[str, str | bool | int], *, team: str | None = None,
                      namespace: str | None = None) -> None:
        await self.audit.record(kind, actor, subject=subject, team=team, namespace=namespace,
                                details=dict(details))


class IdentityChanged(Forbidden):
    """The account is linked to another identity of the same source than the one signing in
    under its name (a reused LDAP uid, another OIDC ``sub``)."""


def may_claim(account: User, identity: Identity) -> bool:
    """Whether ``identity`` may take over ``account``, pre-created (no external id yet) under
    its name. By name only where names are assigned by the directory (LDAP); for a sign-in
    provider, whose user names the person may choose, only with a verified email equal to the
    one the admin gave the account (compared case-insensitively)."""
    if identity.names_assigned:
        return True
    return (identity.email_verified and _usable_email(identity.email)
            and identity.email.casefold() == account.email.casefold())


def _usable_email(email: str) -> bool:
    """One ``@``, printable, no spaces, short enough; anything else a directory sends is
    ignored rather than stored."""
    return (email.count("@") == 1 and 0 < len(email) <= MAX_EMAIL and email.isprintable()
            and not any(c.isspace() for c in email))


class LdapLogins:
    """LDAP passwords for the Authenticator, and the periodic sync of LDAP accounts."""

    def __init__(self, ldap: LdapDirectory, directory: Directory, rules: SyncRules) -> None:
        self._ldap = ldap
        self._directory = directory
        self._rules = rules

    async def verify(self, username: str, password: str) -> User | None:
        """The synced account if the directory accepts the password, else None.

        DirectoryUnavailable (503) when the directory cannot be asked.
        """
        if not is_valid_namespace(username):
            return None  # not a name Dockyard could have; no need to ask the directory
        link = await self._directory.links.account(username)
        if link is not None and link.source != LDAP_SOURCE:
            return None
        entry = await self._ldap.authenticate(username, password)
        if entry is None:
            if link is not None and await self._ldap.lookup(username) is None:
                await self._directory.suspend(username, LDAP_SOURCE)
            return None
        try:
            return await self._directory.apply(self._identity(username, entry), self._rules)
        except IdentityChanged:
            # Another entry under the same uid: the account's own entry is gone.
            await self._directory.suspend(username, LDAP_SOURCE)
            raise

    async def sync_all(self) -> int:
        """Sync every LDAP account now; returns how many were looked at. Stops (raising
        DirectoryUnavailable) at the first failure to reach the directory: an unreachable
        directory never suspends anyone."""
        accounts = await self._directory.links.accounts(LDAP_SOURCE)
        for account in accounts:
            entry = await self._ldap.lookup(account.name)
            if entry is None:
                await self._directory.suspend(account.name, LDAP_SOURCE)
                continue
            try:
                await self._directory.apply(self._identity(account.name, entry), self._rules)
            except IdentityChanged:
                await self._directory.suspend(account.name, LDAP_SOURCE)
            except Forbidden as exc:
                log.warning("ldap sync skipped an account",
                            extra={"user": account.name, "reason": exc.code})
        return len(accounts)

    @staticmethod
    def _identity(username: str, entry: DirectoryEntry) -> Identity:
        """Linked by the entry's stable id where the directory has one (entryUUID, objectGUID):
        a new entry under a reused uid is another person. Without one, by DN, which moves
        with the entry (so a reused uid cannot be told apart)."""
        dn = normalize_dn(entry.dn)
        if entry.unique_id:
            return Identity(LDAP_SOURCE, entry.unique_id, username, entry.email, entry.groups,
                            names_assigned=True, previous_ids=frozenset({dn}))
        return Identity(LDAP_SOURCE, dn, username, entry.email, entry.groups, movable=True,
                        names_assigned=True)


def ldap_rules(mappings: Sequence[GroupMapping], admin_group: str,
               manage_manual_members: bool) -> SyncRules:  # noqa: FBT001
    """Rules with the mappings' group DNs normalized as the directory's groups are."""
    return SyncRules(
        tuple(mapping.model_copy(update={"group": normalize_dn(mapping.group)})
              for mapping in mappings),
        normalize_dn(admin_group) if admin_group else "",
        manage_manual_members,
    )
