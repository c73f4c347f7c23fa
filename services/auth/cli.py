"""``dockyard user|team|namespace|token|bot|keys …``: identity and keys, for the operator.

The CLI acts as the operator, with an administrator's rights: whoever can run it on the data
directory can read the database and the signing keys anyway. It goes through IdentityService
exactly as the API does (same checks, same audit events); the events it causes carry a null
``actor``, which marks them as the operator's (schemas/events/identity-event.schema.json), and
cannot be mistaken for an account's, as any name could. Every check runs before the change, so a
refused command (a ``DyError``, which ``services.cli.main`` prints as ``dockyard: <message>``
with exit status 2) has changed nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from services.auth.app import keyring, open_auth
from services.auth.identity import ROLES, VISIBILITIES, IdentityService
from services.auth.keys import KeyringError
from services.auth.policy import Principal
from services.auth.ports import Catalog
from services.core.config import Config, load_config
from services.core.errors import Invalid
from services.core.eventlog.factory import open_event_log

__all__ = ["OPERATOR", "add_commands"]

# The operator: an administrator without an account (``name`` None: audited as a null actor).
OPERATOR = Principal(None, "service", admin=True, credential="internal")

Action = Callable[[IdentityService, argparse.Namespace], Awaitable[list[str]]]
CatalogOpener = Callable[[Config], AbstractAsyncContextManager[Catalog]]
Subparsers = argparse._SubParsersAction  # noqa: SLF001 - argparse exports no public name for it


def add_commands(
    commands: Subparsers[argparse.ArgumentParser], open_catalog: CatalogOpener
) -> None:
    """Add ``user``, ``team``, ``namespace``, ``token``, ``bot`` and ``keys`` to the CLI;
    ``open_catalog`` opens ingest's catalog, which namespace creation reads."""
    user = _group(commands, "user", "accounts")
    add = _command(user, "add", "add an account", _user_add)
    add.add_argument("name", metavar="NAME")
    add.add_argument("--admin", action="store_true", help="make it an administrator")
    add.add_argument("--email", metavar="E", default="", help="default: NAME@localhost")
    add.add_argument("--password-stdin", action="store_true", required=True,
                     help="read the password from standard input (one trailing newline dropped)")
    _command(user, "disable", "disable an account (its sign-ins and tokens stop working)",
             _user_disable).add_argument("name", metavar="NAME")
    _command(user, "enable", "enable a disabled account",
             _user_enable).add_argument("name", metavar="NAME")
    # Break-glass: these need no password, so no lockout or address throttle stops them.
    _command(user, "unlock", "end an account's lockout after failed sign-ins",
             _user_unlock).add_argument("name", metavar="NAME")
    passwd = _command(user, "passwd", "set an account's password, and end its lockout",
                      _user_passwd)
    passwd.add_argument("name", metavar="NAME")
    passwd.add_argument("--password-stdin", action="store_true", required=True,
                        help="read the password from standard input (one trailing newline"
                        " dropped)")

    team = _group(commands, "team", "teams and their members")
    add = _command(team, "add", "add a team", _team_add)
    add.add_argument("name", metavar="NAME")
    add.add_argument("--owner", metavar="USER", required=True, help="its first owner")
    member = _group(team, "member", "team members")
    add = _command(member, "add", "add a member, or change their role", _member_add)
    add.add_argument("team", metavar="TEAM")
    add.add_argument("user", metavar="USER")
    add.add_argument("--role", choices=ROLES, required=True)
    remove = _command(member, "remove", "remove a member", _member_remove)
    remove.add_argument("team", metavar="TEAM")
    remove.add_argument("user", metavar="USER")

    namespace = _group(commands, "namespace", "namespaces")
    add = _command(namespace, "add", "add a namespace owned by a team", _namespace_add)
    add.add_argument("name", metavar="NAME")
    add.add_argument("--team", metavar="TEAM", required=True)
    add.add_argument("--visibility", choices=VISIBILITIES, default="private")

    token = _group(commands, "token", "application tokens")
    create = _command(token, "create", "create a token; its secret is the last line printed",
                      _token_create)
    create.add_argument("user", metavar="USER")
    create.add_argument("--label", metavar="LABEL", required=True)
    revoke = _command(token, "revoke", "revoke a token", _token_revoke)
    revoke.add_argument("user", metavar="USER")
    revoke.add_argument("label", metavar="LABEL")

    bot = _group(commands, "bot", "bots: accounts that sign in with tokens only")
    add = _command(bot, "add", "add a bot as a member of a team, which owns it", _bot_add)
    add.add_argument("name", metavar="NAME")
    add.add_argument("--team", metavar="TEAM", required=True)
    add.add_argument("--role", choices=ROLES, required=True)
    _command(bot, "list", "the bots and who owns each", _bot_list)

    keys = _group(commands, "keys", "token signing keys")
    _with_config(keys.add_parser("rotate", help="add a key, which signs from then on")) \
        .set_defaults(run=_keys_rotate)
    _with_config(keys.add_parser("list", help="the keys the registry trusts, oldest first")) \
        .set_defaults(run=_keys_list)
    remove = _with_config(keys.add_parser("remove", help="stop trusting a retired key"))
    remove.add_argument("kid", metavar="KID")
    remove.set_defaults(run=_keys_remove)
    for group in ("user", "team", "namespace", "token", "bot"):
        commands.choices[group].set_defaults(open_catalog=open_catalog)


# --- identity ------------------------------------------------------------------------------


async def _user_add(identity: IdentityService, args: argparse.Namespace) -> list[str]:
    user = await identity.create_user(OPERATOR, args.name, email=args.email,
                                      password=_read_password(), admin=args.admin)
    return [f"added {'administrator' if user.admin else 'user'} {user.name} <{user.email}>"]


async def _user_disable(identity: IdentityService, args: argparse.Namespace) -> list[str]:
    await identity.set_enabled(OPERATOR, args.name, enabled=False)
    return [f"disabled {args.name}: its password and tokens no longer work"]


async def _user_enable(identity: IdentityService, args: argparse.Namespace) -> list[str]:
    await identity.set_enabled(OPERATOR, args.name, enabled=True)
    return [f"enabled {args.name}"]


async def _user_unlock(identity: IdentityService, args: argparse.Namespace) -> list[str]:
    await identity.unlock(OPERATOR, args.name)
    return [f"unlocked {args.name}: its password works again"]


async def _user_passwd(identity: IdentityService, args: argparse.Namespace) -> list[str]:
    await identity.change_password(OPERATOR, args.name, _read_password())
    await identity.unlock(OPERATOR, args.name)
    return [f"set the password of {args.name}; its refresh tokens are revoked"]


async def _team_add(identity: IdentityService, args: argparse.Namespace) -> list[str]:
    await identity.create_team(OPERATOR, args.name, owner=args.owner)
    return [f"added team {args.name}, owned by {args.owner}"]


async def _member_add(identity: IdentityService, args: argparse.Namespace) -> list[str]:
    await identity.set_member(OPERATOR, args.team, args.user, args.role)
    return [f"{args.user} is {args.role} of {args.team}"]


async def _member_remove(identity: IdentityService, args: argparse.Namespace) -> list[str]:
    await identity.remove_member(OPERATOR, args.team, args.user)
    return [f"removed {args.user} from {args.team}"]


async def _namespace_add(identity: IdentityService, args: argparse.Namespace) -> list[str]:
    await identity.create_namespace(OPERATOR, args.name, team=args.team,
                                    visibility=args.visibility)
    return [f"added {args.visibility} namespace {args.name}, owned by team {args.team}"]


async def _token_create(identity: IdentityService, args: argparse.Namespace) -> list[str]:
    _, secret = await identity.create_token(OPERATOR, args.user, args.label)
    # The secret last, alone on its line, so scripts can take it with `tail -n 1`.
    return [f"created token {args.label!r} for {args.user}; it is shown this once:", secret]


async def _token_revoke(identity: IdentityService, args: argparse.Namespace) -> list[str]:
    await identity.revoke_token(OPERATOR, args.user, args.label)
    return [f"revoked token {args.label!r} of {args.user}"]


async def _bot_add(identity: IdentityService, args: argparse.Namespace) -> list[str]:
    await identity.create_bot(OPERATOR, args.name, team=args.team, role=args.role)
    return [f"added bot {args.name}, {args.role} of {args.team}, owned by team {args.team}",
            f"give it a token with: dockyard token create {args.name} --label LABEL"]


def _read_password() -> str:
    return sys.stdin.read().removesuffix("\n").removesuffix("\r")


async def _bot_list(identity: IdentityService, _: argparse.Namespace) -> list[str]:
    lines: list[str] = []
    after: str | None = None
    while bots := await identity.users(OPERATOR, kind="bot", after=after, limit=500):
        lines.extend(f"{bot.name}  owner: "
                     f"{f'team {bot.owner_team}' if bot.owner_team else 'administrators'}"
                     f"{'' if bot.enabled else '  (disabled)'}" for bot in bots)
        after = bots[-1].name
    return lines


# --- keys ------------------------------------------------------------------------------------

# The registry reads its rootcertbundle once, at start (distribution registry/auth/token).
_BUNDLE_READ = "it reads the bundle only when it starts"


def _keys_rotate(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    ring = keyring(config)
    key = ring.rotate(config.auth.algorithm, common_name=config.auth.issuer)
    _print([f"added key {key.kid} ({key.algorithm}) to {ring.bundle}",
            (f"restart the registry so it trusts the new key ({_BUNDLE_READ}),"
            " then restart Dockyard so it signs with it"),
            "tokens signed by older keys verify until those keys are removed"])
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    keys = keyring(config).keys()
    _print([f"{key.kid}  {key.algorithm}  {'active' if key is keys[-1] else 'trusted'}"
            for key in keys])
    return 0


def _keys_remove(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    ring = keyring(config)
    try:
        ring.remove(args.kid)
    except KeyringError as exc:
        raise Invalid("keyring", str(exc)) from None
    _print([f"removed key {args.kid} from {ring.bundle}",
            (f"restart the registry ({_BUNDLE_READ}); until then tokens signed by {args.kid}"
            " still verify")])
    return 0


# --- plumbing --------------------------------------------------------------------------------


def _group(
    commands: Subparsers[argparse.ArgumentParser], name: str, about: str
) -> Subparsers[argparse.ArgumentParser]:
    parser = commands.add_parser(name, help=about)
    return parser.add_subparsers(required=True, metavar="ACTION")


def _command(
    group: Subparsers[argparse.ArgumentParser], name: str, about: str, action: Action
) -> argparse.ArgumentParser:
    parser = _with_config(group.add_parser(name, help=about))
    parser.set_defaults(run=lambda args: _run(action, args))
    return parser


def _with_config(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", type=Path, required=True, metavar="FILE",
                        help="path to dockyard.toml")
    return parser


def _run(action: Action, args: argparse.Namespace) -> int:
    config = load_config(args.config)
    _print(asyncio.run(_on_identity(config, action, args)))
    return 0


async def _on_identity(config: Config, action: Action, args: argparse.Namespace) -> list[str]:
    async with (open_event_log(config) as event_log, args.open_catalog(config) as catalog,
                open_auth(config, event_log, catalog) as auth):
        return await action(auth.identity, args)


def _print(lines: list[str]) -> None:
    for line in lines:
        print(line)  # noqa: T201 - the CLI's output
