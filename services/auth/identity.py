"""Managing accounts, teams, namespaces, tokens and bots, with Portus' rights.

Admins may do everything. Otherwise: a team's owners manage its members and its namespaces
(each right can be limited to admins by ``[permissions]``, like Portus' ``user_permission.*``);
users manage their own password, tokens and personal namespace. Every change is audited.

A namespace created over repositories the catalog already holds under its name (pushed before
namespaces had to exist) takes them over: only admins may do that, and the audit says so.
What a caller may not see is not found, exactly as what does not exist, so that a refusal never
tells whether an account, a team or a namespace exists: a non-admin sees their own account and
those of their teams' members, the teams they are in, and the namespaces they may pull from.
Only what they see but may not change is forbidden.
A bot belongs to the team it was created in (bots from before owners existed belong to the
admins): only that team's owners and admins manage its memberships and its tokens, so adding a
bot to another team needs owning both (``policy.may_manage_bot``). To anyone else a bot they
may not manage is not found, like an account that does not exist.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from services.auth.audit import Audit
from services.auth.credentials import ends_credentials, require_credential_manager
from services.auth.models import (
    AccountKind,
    AppToken,
    LoginState,
    Member,
    Namespace,
    Team,
    User,
)
from services.auth.passwords import hash_password
from services.auth.policy import (
    Access,
    Policy,
    Principal,
    Role,
    Visibility,
    may_manage_bot,
    push_claim,
    repository_actions,
)
from services.auth.ports import AuthStore, Catalog
from services.auth.service import APP_TOKEN_PREFIX, new_secret, secret_hash
from services.core.errors import Conflict, Forbidden, Invalid, NotFound
from services.core.reference import is_valid_namespace

__all__ = ["IdentityService", "Permissions", "Profile"]

ROLES: tuple[Role, ...] = ("viewer", "contributor", "owner")
VISIBILITIES: tuple[Visibility, ...] = ("private", "protected", "public")
MIN_PASSWORD = 8
# argon2 hashes whatever it is given; a megabyte "password" would cost every login that much.
MAX_PASSWORD = 1024
MAX_LABEL = 64
MAX_EMAIL = 254  # RFC 5321's limit on a forward path, less the angle brackets
MAX_DESCRIPTION = 1024


@dataclass(frozen=True, slots=True)
class Permissions:
    """What non-admins may do (Portus' ``user_permission`` switches); all on by default."""

    create_team: bool = True
    manage_team: bool = True
    create_namespace: bool = True
    manage_namespace: bool = True
    change_visibility: bool = True


@dataclass(frozen=True, slots=True)
class Profile:
    """An account as it sees itself: its teams (name → role) and the namespaces it belongs to."""

    user: User
    teams: dict[str, Role]
    namespaces: list[Namespace]


class IdentityService:
    def __init__(
        self, store: AuthStore, audit: Audit, permissions: Permissions, catalog: Catalog
    ) -> None:
        self.store = store
        self._audit = audit
        self._permissions = permissions
        self._catalog = catalog

    # accounts ------------------------------------------------------------------------------

    async def create_user(
        self, actor: Principal, name: str, *, email: str, password: str, admin: bool = False
    ) -> User:
        _require_admin(actor)
        _check_name(name, "user")
        _check_password(password)
        if email:
            _check_email(email)
        user = User(name, email or f"{name}@localhost", admin=admin, enabled=True)
        # Its personal namespace takes over what was pushed under the name before namespaces
        # had to exist; only an admin creates accounts, and the log says so.
        adopted = await self._catalog.repository_count(name)
        # argon2id takes a good part of a second on purpose: not on the event loop.
        await self.store.create_user(user, await asyncio.to_thread(hash_password, password))
        await self._audit.record("user.create", actor.name, subject=name, namespace=name,
                                 details={"admin": admin, "adopted_repositories": adopted})
        return user

    async def create_bot(self, actor: Principal, name: str, *, team: str, role: Role) -> User:
        _check_name(name, "bot")
        _check_role(role)
        await self._require_team_manager(actor, team)
        bot = User(name, f"{name}@bots.local", admin=False, enabled=True, kind="bot",
                   owner_team=team)
        await self.store.create_user(bot, None)
        await self.store.set_member(team, name, role)
        await self._audit.record("bot.create", actor.name, subject=name, team=team,
                                 details={"role": role})
        return bot

    async def set_enabled(self, actor: Principal, name: str, *, enabled: bool) -> User:
        _require_admin(actor)
        if not enabled and name == actor.name:
            raise Forbidden("self_disable", "you cannot disable your own account")
        before = await self._user(name)
        user = await self.store.update_user(
            name, enabled=enabled, bump_epoch=ends_credentials(before, enabled=enabled))
        await self._audit.record("user.enable" if enabled else "user.disable", actor.name,
                                 subject=name)
        return user

    async def set_admin(self, actor: Principal, name: str, *, admin: bool) -> User:
        _require_admin(actor)
        if not admin and name == actor.name:
            raise Forbidden("self_demote", "you cannot remove your own admin rights")
        before = await self._user(name)
        user = await self.store.update_user(
            name, admin=admin, bump_epoch=ends_credentials(before, admin=admin))
        await self._audit.record("user.change_admin", actor.name, subject=name,
                                 details={"admin": admin})
        return user

    async def change_password(self, actor: Principal, name: str, password: str, *,
                              reauthenticated: bool = False) -> None:
        """``reauthenticated``: a portal session's person proved again who they are
        (services/auth/credentials.py)."""
        found = await self._visible_user(actor, name)
        if not actor.admin and actor.name != name:
            raise Forbidden("forbidden", "only admins change other accounts' passwords")
        require_credential_manager(actor, reauthenticated=reauthenticated)
        _check_password(password)
        if found.kind == "bot":
            raise Invalid("bot_password", "bots sign in with application tokens only")
        await self.store.update_user(
            name, password_hash=await asyncio.to_thread(hash_password, password),
            bump_epoch=ends_credentials(found, password=True))
        await self._audit.record("user.change_password", actor.name, subject=name)

    async def unlock(self, actor: Principal, name: str) -> User:
        """End an account's lockout and forget its failed passwords (services/auth/lockout.py):
        the break-glass for an administrator locked out by guessers (``dockyard user
        unlock``)."""
        _require_admin(actor)
        if not await self.store.set_login_state(name, LoginState(), expected=None):
            raise NotFound("user_not_found", f"no account named {name!r}")
        await self._audit.record("user.unlock", actor.name, subject=name)
        return await self._user(name)

    async def update_user(
        self,
        actor: Principal,
        name: str,
        *,
        enabled: bool | None = None,
        admin: bool | None = None,
        password: str | None = None,
        email: str | None = None,
        reauthenticated: bool = False,
    ) -> User:
        """Several changes to one account, every one checked before any is made.

        ``enabled`` and ``admin`` are for admins; ``password`` and ``email`` for the account
        itself too. Only real changes are made (and audited).
        """
        user = await self._visible_user(actor, name)
        if not actor.admin and (actor.name != name or enabled is not None or admin is not None):
            raise Forbidden("forbidden", "only admins change other accounts, and their"
                            " enabled and admin flags")
        _check_account_changes(actor, user, enabled=enabled, admin=admin, password=password,
                               email=email)
        if password is not None:
            require_credential_manager(actor, reauthenticated=reauthenticated)
        if email is not None and email != user.email:
            user = await self.store.update_user(name, email=email)
            await self._audit.record("user.change_email", actor.name, subject=name)
        if password is not None:
            await self.change_password(actor, name, password, reauthenticated=reauthenticated)
        if admin is not None and admin != user.admin:
            user = await self.set_admin(actor, name, admin=admin)
        if enabled is not None and enabled != user.enabled:
            user = await self.set_enabled(actor, name, enabled=enabled)
        return user

    async def sign_out_everywhere(self, actor: Principal, name: str) -> User:
        """End every portal session and refresh token of the account (its application tokens
        stay: revoke those one by one). For the account itself and admins."""
        if not actor.admin and actor.name != name:
            raise Forbidden("forbidden", "only admins sign other accounts out")
        user = await self.store.update_user(name, bump_epoch=True)
        await self._audit.record("user.sign_out_everywhere", actor.name, subject=name)
        return user

    async def get_user(self, actor: Principal, name: str) -> User:
        """An account, for admins and for itself."""
        user = await self._visible_user(actor, name)
        if not actor.admin and actor.name != name:
            raise Forbidden("forbidden", "only admins see other accounts")
        return user

    async def users(
        self, actor: Principal, *, kind: AccountKind | None = None, after: str | None, limit: int
    ) -> list[User]:
        """Accounts by name after ``after`` (of one kind if given); for admins."""
        _require_admin(actor)
        found: list[User] = []
        while len(found) < limit:
            batch = await self.store.list_users(after=after, limit=limit)
            found.extend(user for user in batch if kind is None or user.kind == kind)
            if len(batch) < limit:
                break
            after = batch[-1].name
        return found[:limit]

    async def profile(self, actor: Principal) -> Profile:
        """Who ``actor`` is: its account, teams and the namespaces it owns or is a member of."""
        user = await self._user(actor.name or "")
        teams = await self.store.roles_of(user.name)
        namespaces = [ns for ns, role in await self.store.namespaces(user.name)
                      if role is not None or ns.owner == user.name]
        return Profile(user, teams, namespaces)

    # teams ---------------------------------------------------------------------------------

    async def create_team(
        self, actor: Principal, name: str, *, owner: str, description: str = ""
    ) -> Team:
        if not actor.admin and not (self._permissions.create_team and actor.kind == "user"):
            raise Forbidden("forbidden", "only admins create teams here")
        if not actor.admin and owner != actor.name:
            raise Forbidden("forbidden", "you can only create teams you own")
        _check_name(name, "team")
        _check_description(description)
        team = Team(name, description)
        await self.store.create_team(team, owner)
        await self._audit.record("team.create", actor.name, subject=name, team=name,
                                 details={"owner": owner})
        return team

    async def set_member(self, actor: Principal, team: str, user: str, role: Role) -> Member:
        _check_role(role)
        await self._require_team_manager(actor, team)
        await self._require_bot_manager(actor, user)
        if role != "owner":
            await self._keep_an_owner(team, leaving=user)
        before = await self.store.set_member(team, user, role)
        if before is None:
            await self._audit.record("team.add_member", actor.name, subject=user, team=team,
                                     details={"role": role})
        elif before != role:
            await self._audit.record("team.change_member_role", actor.name, subject=user,
                                     team=team, details={"role": role, "previous": before})
        return Member(team, user, role)

    async def remove_member(self, actor: Principal, team: str, user: str) -> None:
        """For the team's managers; a bot's owner may also take the bot out of any team (that
        only takes access away)."""
        try:
            await self._require_team_manager(actor, team)
        except Forbidden:
            if await self._bot_managed_by(actor, user) is not True:
                raise
        await self._keep_an_owner(team, leaving=user)
        if await self.store.remove_member(team, user) is None:
            raise NotFound("member_not_found", f"{user!r} is not a member of {team!r}")
        await self._audit.record("team.remove_member", actor.name, subject=user, team=team)

    async def teams(self, actor: Principal) -> list[Team]:
        return await self.store.list_teams(member=None if actor.admin else actor.name)

    async def members(self, actor: Principal, team: str) -> list[Member]:
        members = await self.store.members(team)
        if await self.store.get_team(team) is None or not (
                actor.admin or actor.name in {m.user for m in members}):
            raise NotFound("team_not_found", f"no team named {team!r}")
        return members

    async def get_team(self, actor: Principal, name: str) -> tuple[Team, list[Member]]:
        """A team and its members, for its members and admins."""
        members = await self.members(actor, name)
        team = await self.store.get_team(name)
        if team is None:
            raise NotFound("team_not_found", f"no team named {name!r}")
        return team, members

    # namespaces ----------------------------------------------------------------------------

    async def create_namespace(
        self,
        actor: Principal,
        name: str,
        *,
        team: str,
        visibility: Visibility = "private",
        description: str = "",
    ) -> Namespace:
        _check_name(name, "namespace")
        _check_visibility(visibility)
        _check_description(description)
        await self._require_namespace_creator(actor, team)
        return await self._create_namespace(
            actor, Namespace(name, "team", visibility, description, team=team), {})

    async def create_namespace_for_push(
        self, actor: Principal, name: str, policy: Policy
    ) -> Namespace:
        """The namespace a push into ``name`` creates (``create_namespace_on_push``), private,
        owned as ``push_claim`` says. Raises Forbidden when this push may not create it."""
        _check_name(name, "namespace")
        team_role = (await self.store.roles_of(actor.name)).get(name) if actor.name else None
        owner = push_claim(actor, team_role, policy)
        if owner is None:
            raise Forbidden("namespace_not_found",
                            f"namespace {name!r} does not exist, and a push by {actor.name!r}"
                            " may not create it")
        team = name if owner == "team" else None
        if team is not None:
            await self._require_namespace_creator(actor, team)
        return await self._create_namespace(
            actor, Namespace(name, "team", "private", "", team=team), {"on_push": True})

    async def _create_namespace(
        self, actor: Principal, namespace: Namespace, details: dict[str, object]
    ) -> Namespace:
        name = namespace.name
        adopted = await self._catalog.repository_count(name)
        # (A name already taken is the store's Conflict to report, whatever the catalog holds.)
        if adopted and not actor.admin and not await self.store.namespaces(None, [name]):
            raise Forbidden("namespace_has_repositories",
                            f"repositories named {name}/… were pushed before namespace"
                            f" {name!r} existed; only an admin may create it (and take them"
                            " over)")
        await self.store.create_namespace(namespace)
        await self._audit.record("namespace.create", actor.name, subject=name, namespace=name,
                                 team=namespace.team,
                                 details={"visibility": namespace.visibility, **details,
                                          "adopted_repositories": adopted})
        return namespace

    async def update_namespace(
        self,
        actor: Principal,
        name: str,
        *,
        visibility: Visibility | None = None,
        description: str | None = None,
        team: str | None = None,
    ) -> Namespace:
        (current, role) = await self._visible_namespace(actor, name)
        manager = actor.admin or (current.kind == "personal" and current.owner == actor.name) or (
            role == "owner" and self._permissions.manage_namespace)
        if not manager:
            raise Forbidden("forbidden", f"only admins and owners manage namespace {name!r}")
        _check_description(description)
        if visibility is not None:
            _check_visibility(visibility)
            if not actor.admin and not self._permissions.change_visibility:
                raise Forbidden("forbidden", "only admins change visibility here")
            if current.kind == "global" and visibility == "private":
                raise Invalid("invalid_visibility", "the global namespace cannot be private")
        if team is not None:
            if current.kind != "team":
                raise Invalid("not_a_team_namespace", f"{name!r} does not belong to a team")
            if not actor.admin:
                await self._require_team_manager(actor, team)
        updated = await self.store.update_namespace(name, visibility=visibility,
                                                    description=description, team=team)
        for kind, changed, value in (
            ("namespace.change_visibility", visibility, visibility),
            ("namespace.change_description", description, None),
            ("namespace.change_team", team, team),
        ):
            if changed is not None:
                await self._audit.record(kind, actor.name, subject=name, namespace=name,
                                         team=updated.team, details={"to": value} if value else {})
        return updated

    async def namespaces(self, actor: Principal) -> list[Namespace]:
        """The namespaces ``actor`` is a member of or owns (all of them for admins)."""
        records = await self.store.namespaces(actor.name)
        return [ns for ns, role in records
                if actor.admin or role is not None or ns.owner == actor.name]

    async def get_namespace(self, actor: Principal, name: str) -> Namespace:
        """A namespace the signed-in ``actor`` may pull from: its own, its teams', protected
        and public ones. Others are not found, as if they did not exist."""
        return (await self._visible_namespace(actor, name))[0]

    # tokens --------------------------------------------------------------------------------

    async def create_token(
        self, actor: Principal, user: str, label: str, *, expires_at: datetime | None = None
    ) -> tuple[AppToken, str]:
        """The token and its secret, which is shown this once and stored only as a hash."""
        await self._require_token_manager(actor, user)
        # Not an application token; a portal session may, without typing the password again.
        # After the visibility check: a refusal must not tell whether the account exists.
        require_credential_manager(actor, reauthenticated=True)
        if not label or len(label) > MAX_LABEL or not label.isprintable():
            raise Invalid("invalid_label", f"a label is 1 to {MAX_LABEL} printable characters")
        now = datetime.now(UTC)
        if expires_at is not None and expires_at <= now:
            raise Invalid("invalid_expiry", "expires_at must be in the future")
        secret = new_secret(APP_TOKEN_PREFIX)
        token = AppToken(secret_hash(secret).hex()[:16], user, label, now, expires_at, None,
                         revoked=False)
        await self.store.create_app_token(token, secret_hash(secret))
        await self._audit.record("token.create", actor.name, subject=user,
                                 details={"label": label})
        return token, secret

    async def revoke_token(self, actor: Principal, user: str, label: str) -> AppToken:
        await self._require_token_manager(actor, user)
        # As for creating one: a token must not revoke the account's other tokens.
        require_credential_manager(actor, reauthenticated=True)
        revoked = await self.store.revoke_app_token(user, label)
        if revoked is None:
            raise NotFound("token_not_found", f"{user!r} has no live token labelled {label!r}")
        # The refresh tokens it minted end with it (services/auth/refresh.py).
        await self.store.revoke_refresh_tokens(user, revoked.id)
        await self._audit.record("token.revoke", actor.name, subject=user,
                                 details={"label": label})
        return revoked

    async def tokens(self, actor: Principal, user: str) -> list[AppToken]:
        await self._require_token_manager(actor, user)
        return await self.store.list_app_tokens(user)

    # rights ------------------------------------------------------------------------------

    async def _user(self, name: str) -> User:
        found = await self.store.get_user(name)
        if found is None:
            raise NotFound("user_not_found", f"no account named {name!r}")
        return found[0]

    async def _visible_namespace(
        self, actor: Principal, name: str
    ) -> tuple[Namespace, Role | None]:
        """The namespace and ``actor``'s role in it if they may see it (pull from it), else
        not found as if it did not exist."""
        records = await self.store.namespaces(actor.name, [name])
        if not records or not _may_see(actor, *records[0]):
            raise NotFound("namespace_not_found", f"no namespace named {name!r}")
        return records[0]

    async def _require_namespace_creator(self, actor: Principal, team: str) -> None:
        if not actor.admin:
            if not self._permissions.create_namespace:
                raise Forbidden("forbidden", "only admins create namespaces here")
            await self._require_team_manager(actor, team)

    async def _visible_user(self, actor: Principal, name: str) -> User:
        """The account ``name`` if ``actor`` may see it (their own, a teammate's; any for
        admins), else not found as if it did not exist."""
        found = await self.store.get_user(name)
        if found is not None and not actor.admin and actor.name != name:
            theirs = await self.store.roles_of(actor.name or "")
            if not theirs.keys() & (await self.store.roles_of(name)).keys():
                found = None
        if found is None:
            raise NotFound("user_not_found", f"no account named {name!r}")
        return found[0]

    async def _require_team_manager(self, actor: Principal, team: str) -> None:
        roles = {} if actor.admin else await self.store.roles_of(actor.name or "")
        if await self.store.get_team(team) is None or not (actor.admin or team in roles):
            raise NotFound("team_not_found", f"no team named {team!r}")
        if actor.admin:
            return
        if roles.get(team) != "owner" or not self._permissions.manage_team:
            raise Forbidden("forbidden", f"only admins and owners of {team!r} may do this")

    async def _require_token_manager(self, actor: Principal, user: str) -> None:
        account = await self._visible_user(actor, user)
        if actor.name == user:
            return
        if account.kind == "bot":
            await self._require_bot_manager(actor, user, account)
        elif not actor.admin:
            raise Forbidden("forbidden", f"only {user!r} and admins manage these tokens")

    async def _require_bot_manager(
        self, actor: Principal, name: str, account: User | None = None
    ) -> None:
        """NotFound, as for an unknown account, when ``name`` is a bot ``actor`` may not
        manage; people and unknown names pass (the caller decides about those)."""
        if await self._bot_managed_by(actor, name, account) is False:
            raise NotFound("user_not_found", f"no account named {name!r}")

    async def _bot_managed_by(
        self, actor: Principal, name: str, account: User | None = None
    ) -> bool | None:
        """Whether ``actor`` manages the bot ``name``; None when it is no bot."""
        if account is None:
            found = await self.store.get_user(name)
            account = None if found is None else found[0]
        if account is None or account.kind != "bot":
            return None
        roles = await self.store.roles_of(actor.name or "")
        return may_manage_bot(actor, account.owner_team, roles)

    async def _keep_an_owner(self, team: str, *, leaving: str) -> None:
        owners = {m.user for m in await self.store.members(team) if m.role == "owner"}
        if owners == {leaving}:
            raise Conflict("last_owner", f"{leaving!r} is the last owner of {team!r};"
                           " make someone else owner first")


def _may_see(actor: Principal, namespace: Namespace, role: Role | None) -> bool:
    """Whether the signed-in ``actor`` may see the namespace: whether they may pull from it
    (``Policy()``: its one setting on pulls, ``anonymous_pull``, is for anonymous callers)."""
    access = Access(exists=True, kind=namespace.kind, visibility=namespace.visibility,
                    owner=namespace.owner, role=role)
    return "pull" in repository_actions(actor, access, Policy())


def _require_admin(actor: Principal) -> None:
    if not actor.admin:
        raise Forbidden("forbidden", "this needs an administrator")


def _check_name(name: str, what: str) -> None:
    if not is_valid_namespace(name):
        raise Invalid(f"invalid_{what}_name",
                      f"{what} names are lowercase letters and digits, separated by . _ or -"
                      f" (at most 64 characters); {name!r} is not one")


def _check_account_changes(
    actor: Principal,
    user: User,
    *,
    enabled: bool | None,
    admin: bool | None,
    password: str | None,
    email: str | None,
) -> None:
    if enabled is False and user.name == actor.name:
        raise Forbidden("self_disable", "you cannot disable your own account")
    if admin is False and user.name == actor.name:
        raise Forbidden("self_demote", "you cannot remove your own admin rights")
    if password is not None:
        _check_password(password)
        if user.kind == "bot":
            raise Invalid("bot_password", "bots sign in with application tokens only")
    if email is not None:
        _check_email(email)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise Invalid("weak_password", f"passwords have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise Invalid("invalid_password", f"passwords have at most {MAX_PASSWORD} characters")


def _check_email(email: str) -> None:
    local, at, domain = email.rpartition("@")
    if (not at or not local or not domain or len(email) > MAX_EMAIL
            or not email.isprintable() or any(c.isspace() for c in email)):
        raise Invalid("invalid_email", f"email must look like name@example.com (at most"
                      f" {MAX_EMAIL} characters, no spaces); {email[:MAX_EMAIL]!r} is not one")


def _check_description(description: str | None) -> None:
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise Invalid("invalid_description",
                      f"a description has at most {MAX_DESCRIPTION} characters")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise Invalid("invalid_role", f"role must be one of {', '.join(ROLES)}")


def _check_visibility(visibility: str) -> None:
    if visibility not in VISIBILITIES:
        raise Invalid("invalid_visibility", f"visibility must be one of {', '.join(VISIBILITIES)}")
