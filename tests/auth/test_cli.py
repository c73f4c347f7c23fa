"""``dockyard user|team|namespace|token|bot|keys``, as an operator runs them on a data directory
that ``dockyard init`` made.

Most commands run in-process through ``services.cli.main`` (the console script only wraps it in
``sys.exit``); ``--password-stdin`` and the token that then signs in to a running Dockyard go
through the installed script as child processes. A refused command exits 2 with
``dockyard: <message>`` and leaves the database, the event log and the keys as they were.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from services.auth.adapters.sqlite import SqliteAuthStore
from services.auth.app import AUTH_DB, keyring, open_auth
from services.auth.audit import IDENTITY_EVENTS
from services.auth.models import LoginState, User
from services.auth.service import Authenticator, LoginPolicy
from services.cli import main
from services.core.config import Config, load_config
from services.core.errors import Unauthorized
from services.core.eventlog.sqlite import SqliteEventLog
from services.ingest.app import open_catalog_reader
from tests.support.dockyard import initialised, running_dockyard
from tests.support.waiting import eventually

T = TypeVar("T")

DOCKYARD = Path(sys.executable).with_name("dockyard")
PASSWORD = "alice-password-1"


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory from ``dockyard init``, with alice owning team crew."""
    data_dir = tmp_path_factory.mktemp("cli") / "data"
    config = initialised(data_dir, "http://127.0.0.1:9")
    for argv, stdin in ((["user", "add", "alice", "--password-stdin"], PASSWORD),
                        (["team", "add", "crew", "--owner", "alice"], "")):
        with standard_input(stdin):
            assert main([*argv, "--config", str(config_file(config))]) == 0
    return data_dir


@pytest.fixture
def config(template: Path, tmp_path: Path) -> Config:
    shutil.copytree(template, tmp_path / "data")
    return load_config(tmp_path / "data" / "dockyard.toml", env={})


def config_file(config: Config) -> Path:
    return config.server.data_dir / "dockyard.toml"


@contextmanager
def standard_input(text: str) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stdin", io.StringIO(text))
        yield


def dockyard(
    capsys: pytest.CaptureFixture[str], config: Config, *argv: str, stdin: str = ""
) -> tuple[int, str, str]:
    """``dockyard ARGV --config FILE`` in this process: exit status, stdout, stderr."""
    capsys.readouterr()
    with standard_input(stdin):
        code = main([*argv, "--config", str(config_file(config))])
    out, err = capsys.readouterr()
    return code, out, err


def on_store(config: Config, work: Callable[[SqliteAuthStore], Awaitable[T]]) -> T:
    async def run() -> T:
        store = SqliteAuthStore(config.path(AUTH_DB))
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def user(config: Config, name: str) -> Any:
    found = on_store(config, lambda store: store.get_user(name))
    return None if found is None else found[0]


def identity_events(config: Config) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        log = SqliteEventLog(config.path(config.eventlog.path))
        await log.open()
        try:
            subscription = await log.subscribe(IDENTITY_EVENTS, "test-reader")
            records = await subscription.fetch(max_records=10_000, timeout=0.05)
            await subscription.close()
            return [json.loads(record.value) for record in records]
        finally:
            await log.close()

    return asyncio.run(read())


def snapshot(config: Config) -> tuple[list[str], list[str], dict[str, str]]:
    """Everything a command could change: the auth database, the event log, the keys."""
    def dump(path: Path) -> list[str]:
        with sqlite3.connect(path) as conn:
            return list(conn.iterdump())

    keys_dir = config.path(config.auth.keys_dir)
    files = [*keys_dir.iterdir(), config.path(config.auth.certificate_bundle)]
    return (dump(config.path(AUTH_DB)), dump(config.path(config.eventlog.path)),
            {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in files})


def signs_in(config: Config, name: str, password: str) -> bool:
    async def attempt() -> bool:
        log = SqliteEventLog(config.path(config.eventlog.path))
        await log.open()
        try:
            async with (open_catalog_reader(config) as catalog,
                        open_auth(config, log, catalog) as auth):
                await auth.authenticator.authenticate(name, password)
                return True
        except Unauthorized:
            return False
        finally:
            await log.close()

    return asyncio.run(attempt())


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}


# --- accounts ------------------------------------------------------------------------------


def test_user_add_reads_the_password_from_stdin(config: Config) -> None:
    # The installed script, reading a real pipe, as `echo "$PW" | dockyard user add …` does.
    result = subprocess.run(
        [str(DOCKYARD), "user", "add", "nina", "--admin", "--email", "nina@example.com",
         "--password-stdin", "--config", str(config_file(config))],
        input="nina-password-1\n", capture_output=True, text=True, env=clean_env(),
        timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "nina" in result.stdout
    assert "nina-password-1" not in result.stdout + result.stderr
    nina = user(config, "nina")
    assert (nina.kind, nina.admin, nina.enabled, nina.email) == (
        "user", True, True, "nina@example.com")

    # The trailing newline of the pipe is not part of the password.
    assert signs_in(config, "nina", "nina-password-1")
    assert not signs_in(config, "nina", "nina-password-1\n")


def test_user_add_defaults_to_a_non_admin_with_a_local_email(
    capsys: pytest.CaptureFixture[str], config: Config
) -> None:
    code, out, _ = dockyard(capsys, config, "user", "add", "bob", "--password-stdin",
                            stdin="bob-password-1")
    assert code == 0
    assert out == "added user bob <bob@localhost>\n"
    bob = user(config, "bob")
    assert (bob.admin, bob.email) == (False, "bob@localhost")


def test_user_disable_and_enable(capsys: pytest.CaptureFixture[str], config: Config) -> None:
    code, out, _ = dockyard(capsys, config, "user", "disable", "alice")
    assert (code, out.startswith("disabled alice")) == (0, True)
    assert user(config, "alice").enabled is False
    code, out, _ = dockyard(capsys, config, "user", "enable", "alice")
    assert (code, out) == (0, "enabled alice\n")
    assert user(config, "alice").enabled is True
    assert [(e["type"], e["subject"]) for e in identity_events(config)][-2:] == [
        ("user.disable", "alice"), ("user.enable", "alice")]


def test_user_unlock_and_passwd_end_a_lockout(
    capsys: pytest.CaptureFixture[str], config: Config
) -> None:
    # break-glass: the operator needs no password, so no lockout stands in the way
    locked = LoginState(50, datetime.now(UTC) + timedelta(hours=1))
    on_store(config, lambda store: store.set_login_state("alice", locked, expected=None))
    code, out, _ = dockyard(capsys, config, "user", "unlock", "alice")
    assert (code, out) == (0, "unlocked alice: its password works again\n")
    assert user(config, "alice").login_state == LoginState()

    on_store(config, lambda store: store.set_login_state("alice", locked, expected=None))
    code, out, _ = dockyard(capsys, config, "user", "passwd", "alice", "--password-stdin",
                            stdin="alice-new-password\n")
    assert (code, out.startswith("set the password of alice")) == (0, True)
    assert user(config, "alice").login_state == LoginState()
    principal = on_store(config, lambda store: Authenticator(store, LoginPolicy()).authenticate(
        "alice", "alice-new-password"))
    assert principal.name == "alice"
    assert [(e["type"], e["actor"], e["subject"]) for e in identity_events(config)][-3:] == [
        ("user.unlock", None, "alice"), ("user.change_password", None, "alice"),
        ("user.unlock", None, "alice")]
    code, _, err = dockyard(capsys, config, "user", "unlock", "nobody")
    assert (code, err) == (2, "dockyard: no account named 'nobody'\n")


# --- teams and namespaces --------------------------------------------------------------------


def test_team_add_and_members(capsys: pytest.CaptureFixture[str], config: Config) -> None:
    dockyard(capsys, config, "user", "add", "bob", "--password-stdin", stdin="bob-password-1")
    code, out, _ = dockyard(capsys, config, "team", "add", "ops", "--owner", "bob")
    assert (code, out) == (0, "added team ops, owned by bob\n")
    code, out, _ = dockyard(capsys, config, "team", "member", "add", "ops", "alice",
                            "--role", "viewer")
    assert (code, out) == (0, "alice is viewer of ops\n")
    assert dockyard(capsys, config, "team", "member", "add", "ops", "alice",
                    "--role", "owner")[0] == 0
    assert on_store(config, lambda store: store.roles_of("alice")) == {
        "crew": "owner", "ops": "owner"}
    code, out, _ = dockyard(capsys, config, "team", "member", "remove", "ops", "bob")
    assert (code, out) == (0, "removed bob from ops\n")
    members = on_store(config, lambda store: store.members("ops"))
    assert [(m.user, m.role) for m in members] == [("alice", "owner")]
    assert [(e["type"], e["subject"], e["team"]) for e in identity_events(config)][-5:] == [
        ("user.create", "bob", None), ("team.create", "ops", "ops"),
        ("team.add_member", "alice", "ops"), ("team.change_member_role", "alice", "ops"),
        ("team.remove_member", "bob", "ops")]


@pytest.mark.parametrize("visibility", [None, "private", "protected", "public"])
def test_namespace_add(
    capsys: pytest.CaptureFixture[str], config: Config, visibility: str | None
) -> None:
    option = [] if visibility is None else ["--visibility", visibility]
    code, out, _ = dockyard(capsys, config, "namespace", "add", "apps", "--team", "crew",
                            *option)
    assert code == 0
    assert out == f"added {visibility or 'private'} namespace apps, owned by team crew\n"
    ((namespace, role),) = on_store(config, lambda store: store.namespaces("alice", ["apps"]))
    assert (namespace.kind, namespace.team, namespace.visibility, role) == (
        "team", "crew", visibility or "private", "owner")


# --- tokens and bots -------------------------------------------------------------------------


def test_token_create_prints_the_secret_last_and_revoke_ends_it(
    capsys: pytest.CaptureFixture[str], config: Config
) -> None:
    code, out, _ = dockyard(capsys, config, "token", "create", "alice", "--label", "ci")
    assert code == 0
    secret = out.splitlines()[-1]
    assert secret.startswith("dyat_")
    assert secret not in json.dumps(identity_events(config))
    tokens = on_store(config, lambda store: store.list_app_tokens("alice"))
    assert [(t.label, t.revoked) for t in tokens] == [("ci", False)]
    code, out, _ = dockyard(capsys, config, "token", "revoke", "alice", "ci")
    assert (code, out) == (0, "revoked token 'ci' of alice\n")
    tokens = on_store(config, lambda store: store.list_app_tokens("alice"))
    assert [(t.label, t.revoked) for t in tokens] == [("ci", True)]


def test_bot_add(capsys: pytest.CaptureFixture[str], config: Config) -> None:
    code, out, _ = dockyard(capsys, config, "bot", "add", "robot", "--team", "crew",
                            "--role", "contributor")
    assert code == 0
    assert out.splitlines()[0] == "added bot robot, contributor of crew, owned by team crew"
    robot = user(config, "robot")
    assert (robot.kind, robot.admin, robot.owner_team) == ("bot", False, "crew")
    assert on_store(config, lambda store: store.roles_of("robot")) == {"crew": "contributor"}
    code, out, _ = dockyard(capsys, config, "token", "create", "robot", "--label", "deploy")
    assert code == 0
    assert out.splitlines()[-1].startswith("dyat_")


def test_bot_list_names_each_bots_owner(
    capsys: pytest.CaptureFixture[str], config: Config
) -> None:
    dockyard(capsys, config, "bot", "add", "robot", "--team", "crew", "--role", "viewer")
    on_store(config, lambda store: store.create_user(
        User("oldbot", "oldbot@bots.local", admin=False, enabled=True, kind="bot"), None))
    code, out, _ = dockyard(capsys, config, "bot", "list")
    assert (code, out) == (0, "oldbot  owner: administrators\nrobot  owner: team crew\n")


def test_the_operator_is_audited_as_a_null_actor(
    capsys: pytest.CaptureFixture[str], config: Config
) -> None:
    dockyard(capsys, config, "bot", "add", "robot", "--team", "crew", "--role", "viewer")
    events = identity_events(config)
    assert [e["type"] for e in events] == ["user.create", "team.create", "bot.create"]
    assert {e["actor"] for e in events} == {None}


# --- refusals --------------------------------------------------------------------------------

REFUSED = [
    (["user", "add", "Alice", "--password-stdin"], PASSWORD, "user names are lowercase"),
    (["user", "add", "newbie", "--password-stdin"], "short\n", "at least 8 characters"),
    (["user", "add", "newbie", "--password-stdin"], "", "at least 8 characters"),
    (["user", "add", "newbie", "--email", "not-an-email", "--password-stdin"], PASSWORD,
     "email"),
    (["user", "add", "alice", "--password-stdin"], PASSWORD, "already called 'alice'"),
    (["user", "disable", "nobody"], "", "no account named 'nobody'"),
    (["user", "enable", "nobody"], "", "no account named 'nobody'"),
    (["team", "add", "crew", "--owner", "alice"], "", "already called 'crew'"),
    (["team", "add", "ops", "--owner", "nobody"], "", "no account named 'nobody'"),
    (["team", "add", "Ops", "--owner", "alice"], "", "team names"),
    (["team", "member", "add", "crew", "nobody", "--role", "viewer"], "", "nobody"),
    (["team", "member", "add", "nope", "alice", "--role", "viewer"], "", "no team named"),
    (["team", "member", "add", "crew", "alice", "--role", "viewer"], "", "last owner"),
    (["team", "member", "remove", "crew", "alice"], "", "last owner"),
    (["team", "member", "remove", "crew", "admin"], "", "not a member"),
    (["namespace", "add", "apps", "--team", "nope"], "", "no team named 'nope'"),
    (["namespace", "add", "Apps", "--team", "crew"], "", "namespace names"),
    (["namespace", "add", "alice", "--team", "crew"], "", "an account is already called"),
    (["token", "create", "nobody", "--label", "ci"], "", "no account named 'nobody'"),
    (["token", "create", "alice", "--label", ""], "", "a label is 1 to 64"),
    (["token", "revoke", "alice", "ci"], "", "no live token labelled 'ci'"),
    (["bot", "add", "robot", "--team", "nope", "--role", "viewer"], "", "no team named"),
    (["bot", "add", "alice", "--team", "crew", "--role", "viewer"], "", "already called"),
    (["keys", "remove", "NOPE:NOPE"], "", "no key with id NOPE:NOPE"),
]


@pytest.mark.parametrize(("argv", "stdin", "said"), REFUSED, ids=[" ".join(r[0]) for r in REFUSED])
def test_a_refused_command_exits_2_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], config: Config, argv: list[str], stdin: str, said: str
) -> None:
    before = snapshot(config)
    code, out, err = dockyard(capsys, config, *argv, stdin=stdin)
    assert code == 2
    assert out == ""
    assert err.startswith("dockyard: ")
    assert said in err
    assert snapshot(config) == before


@pytest.mark.parametrize(
    "argv",
    [["team", "member", "add", "crew", "alice", "--role", "boss"],
     ["namespace", "add", "apps", "--team", "crew", "--visibility", "secret"],
     ["bot", "add", "robot", "--team", "crew"],
     ["user", "add", "newbie"],  # --password-stdin is required: no password on the command line
     ["token", "create", "alice"]],
)
def test_a_malformed_command_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], config: Config, argv: list[str]
) -> None:
    before = snapshot(config)
    with pytest.raises(SystemExit) as exited:
        dockyard(capsys, config, *argv)
    assert exited.value.code == 2
    assert "usage: dockyard" in capsys.readouterr().err
    assert snapshot(config) == before


def test_a_missing_config_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["user", "disable", "alice", "--config", str(tmp_path / "nope.toml")])
    assert code == 2
    assert "dockyard init" in capsys.readouterr().err


# --- keys ------------------------------------------------------------------------------------


def test_keys_rotate_list_and_remove(capsys: pytest.CaptureFixture[str], config: Config) -> None:
    ring = keyring(config)
    (first,) = ring.keys()
    code, out, _ = dockyard(capsys, config, "keys", "list")
    assert (code, out) == (0, f"{first.kid}  ES256  active\n")

    code, out, _ = dockyard(capsys, config, "keys", "rotate")
    assert code == 0
    old, new = ring.keys()
    assert old.kid == first.kid
    assert out.splitlines()[0] == f"added key {new.kid} (ES256) to {ring.bundle}"
    assert "restart the registry" in out
    assert ring.bundle.read_bytes().count(b"BEGIN CERTIFICATE") == 2
    code, out, _ = dockyard(capsys, config, "keys", "list")
    assert out == f"{old.kid}  ES256  trusted\n{new.kid}  ES256  active\n"

    code, out, err = dockyard(capsys, config, "keys", "remove", new.kid)
    assert code == 2
    assert "active key" in err
    code, out, _ = dockyard(capsys, config, "keys", "remove", old.kid)
    assert code == 0
    assert out.splitlines()[0] == f"removed key {old.kid} from {ring.bundle}"
    assert "restart the registry" in out
    (left,) = ring.keys()
    assert left.kid == new.kid
    assert ring.bundle.read_bytes().count(b"BEGIN CERTIFICATE") == 1


# --- against a running Dockyard --------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Config:
    return initialised(tmp_path / "served", "http://127.0.0.1:9", sync_interval_seconds="0")


async def cli(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(DOCKYARD), *argv, env=clean_env(), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_token_from_the_cli_signs_in_to_the_api_until_revoked(served: Config) -> None:
    file = str(config_file(served))
    async with running_dockyard(served) as running:
        assert (await cli("user", "add", "carol", "--password-stdin", "--config", file,
                          stdin="carol-password-1\n"))[0] == 0
        code, out, err = await cli("token", "create", "carol", "--label", "laptop",
                                   "--config", file)
        assert code == 0, err
        secret = out.splitlines()[-1]
        bearer = {"Authorization": f"Bearer {secret}"}
        async with httpx.AsyncClient(base_url=running.url, timeout=30) as client:
            me = await client.get("/api/v1/me", headers=bearer)
            assert (me.status_code, me.json()["name"]) == (200, "carol")
            listed = await client.get("/api/v1/users/carol/tokens", headers=bearer)
            assert [t["label"] for t in listed.json()["items"]] == ["laptop"]
            assert secret not in listed.text
            assert (await cli("token", "revoke", "carol", "laptop", "--config", file))[0] == 0
            # Another process's change reaches the server's cached reads within
            # identity_cache_seconds (a change through the server's own API: at once).
            await eventually(lambda: client.get("/api/v1/me", headers=bearer),
                             lambda response: response.status_code == 401,
                             timeout=served.auth.identity_cache_seconds + 5,
                             what="the revoked token being refused")
