"""``dockyard export`` / ``dockyard import``: SQLite stores moved to MongoDB (SecantusDB), and
the same data read back through the ports; bad or misplaced imports change nothing."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.auth.app import open_auth_store
from services.auth.directory_app import open_directory_store
from services.auth.models import (
    AppToken,
    ExternalAccount,
    LoginState,
    Namespace,
    RefreshToken,
    Team,
    User,
)
from services.core.config import Config
from services.core.errors import Conflict, Invalid
from services.ingest.app import open_stores
from services.ingest.models import (
    Activity,
    ActivityFilter,
    PlatformEntry,
    PutManifest,
    PutTag,
    RecordPull,
)
from services.transfer import STORES, export_stores, import_stores
from tests.factories import DIGEST_A, DIGEST_B, OCI_MANIFEST

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SECRET = "0123456789abcdef-secret"
DOCKYARD = Path(sys.executable).parent / "dockyard"


def sqlite_config(data_dir: Path) -> Config:
    return Config.from_mapping({"webhook": {"secret": SECRET},
                                "server": {"data_dir": str(data_dir)}}, env={})


def mongo_config(data_dir: Path, uri: str, database: str) -> Config:
    return Config.from_mapping({"webhook": {"secret": SECRET},
                                "server": {"data_dir": str(data_dir)},
                                "store": {"backend": "mongodb"},
                                "mongodb": {"uri": uri, "database": database}}, env={})


@pytest.fixture
def target(tmp_path: Path, mongo_uri: str, mongo_database_name: str) -> Config:
    return mongo_config(tmp_path / "mongo", mongo_uri, mongo_database_name)


async def fill(config: Config) -> None:
    """A little of everything each store keeps."""
    async with open_auth_store(config) as auth:
        await auth.create_user(User("admin", "admin@x", admin=True, enabled=True), "hash-a")
        await auth.create_user(User("carl", "carl@x", admin=False, enabled=False), "hash-c")
        await auth.create_user(User("robot", "", admin=False, enabled=True, kind="bot"), None)
        await auth.set_login_state("carl", LoginState(1, T0 + timedelta(minutes=10)),
                                   expected=None)
        await auth.create_team(Team("devs", "the developers"), "admin")
        await auth.set_member("devs", "carl", "contributor")
        await auth.set_member("devs", "robot", "viewer")
        await auth.create_namespace(Namespace("web", "team", "public", "the site", "devs"))
        await auth.update_namespace("", visibility="public")
        await auth.create_app_token(AppToken("t1", "carl", "ci", T0, None, None, revoked=False),
                                    b"\x01" * 32)
        await auth.touch_app_token("t1", T0 + timedelta(hours=1))
        await auth.create_app_token(AppToken("t2", "robot", "deploy", T0, T0 + timedelta(days=9),
                                             None, revoked=False), b"\x02" * 32)
        await auth.revoke_app_token("robot", "deploy")
        await auth.create_refresh_token(RefreshToken(
            "f1", 0, "carl", "docker", "t1", 0, T0, T0 + timedelta(days=90)), b"\x03" * 32)
        await auth.create_refresh_token(RefreshToken(
            "f2", 0, "admin", "docker", "password", 0, T0, T0 + timedelta(days=90)),
            b"\x04" * 32)
        await auth.revoke_refresh_family("f2")
    async with open_directory_store(config) as directory:
        await directory.link(ExternalAccount("carl", "oidc:corp", "sub-carl"))
        await directory.link(ExternalAccount("dora", "ldap", ""))  # pre-created
        await directory.set_managed("carl", {"devs": "contributor"})
    async with open_stores(config) as (catalog, activity):
        platforms = (PlatformEntry("linux", "arm64", "v8", DIGEST_B, 9),)
        await catalog.apply([
            ("e1", [PutManifest("web/app", DIGEST_A, OCI_MANIFEST, "image", None, 12, platforms,
                                None, "carl", T0), PutTag("web/app", "1.0", DIGEST_A, "carl", T0)]),
            ("e2", [PutManifest("web/app", DIGEST_B, OCI_MANIFEST, "signature", "x/y", 3, (),
                                DIGEST_A, "carl", T0)]),
            ("e3", [RecordPull("web/app", "1.0", DIGEST_A, T0 + timedelta(seconds=1))]),
        ])
        await activity.record([
            Activity(id=f"a{n}", type="tag.pushed", actor="carl", repository="web/app",
                     namespace="web", tag="1.0", digest=DIGEST_A,
                     time=T0 + timedelta(microseconds=n), address="10.0.0.1",
                     user_agent="skopeo", synthetic=n == 2, details={"n": n, "why": ["x"]},
                     audience="admin" if n == 3 else "namespace")
            for n in (1, 2, 3)
        ])


async def dumps(config: Config) -> dict[str, list[object]]:
    seen: dict[str, list[object]] = {}
    async with open_auth_store(config) as auth, open_directory_store(config) as directory, \
            open_stores(config) as (catalog, activity):
        for name, store in (("auth", auth), ("directory", directory), ("catalog", catalog),
                            ("activity", activity)):
            seen[name] = [record async for record in store.dump()]
    return seen


async def test_sqlite_stores_move_to_mongodb_and_read_the_same(
    tmp_path: Path, target: Config
) -> None:
    source = sqlite_config(tmp_path / "sqlite")
    await fill(source)
    dump = io.StringIO()
    counts = await export_stores(source, dump, STORES)
    assert counts == {"auth": 15, "directory": 3, "catalog": 7, "activity": 3}
    dump.seek(0)
    assert await import_stores(target, dump) == counts
    assert await dumps(target) == await dumps(source)
    async with open_auth_store(source) as before, open_auth_store(target) as after:
        for name in ("admin", "carl", "robot", "nobody"):
            assert await after.get_user(name) == await before.get_user(name)
        for account in ("carl", "robot", None):
            assert await after.namespaces(account) == await before.namespaces(account)
        assert await after.roles_of("carl") == {"devs": "contributor"}
        for secret in (b"\x01" * 32, b"\x02" * 32):
            assert await after.find_app_token(secret) == await before.find_app_token(secret)
        assert await after.list_app_tokens("robot") == await before.list_app_tokens("robot")
        for secret in (b"\x03" * 32, b"\x04" * 32):
            assert await after.find_refresh_token(secret) == await before.find_refresh_token(
                secret)
        revoked = await after.find_refresh_token(b"\x04" * 32)
        assert revoked is not None
        assert revoked[0].revoked
        # The imported store goes on working: labels stay unique, a revoked one is free again.
        with pytest.raises(Conflict):
            await after.create_app_token(AppToken("t3", "carl", "ci", T0, None, None,
                                                  revoked=False), b"\x05" * 32)
        await after.create_app_token(AppToken("t4", "robot", "deploy", T0, None, None,
                                              revoked=False), b"\x06" * 32)
    async with open_directory_store(target) as links:
        # The OIDC user signs in as the account it is linked to, not as a stranger.
        assert await links.by_external_id("oidc:corp", "sub-carl") == \
            ExternalAccount("carl", "oidc:corp", "sub-carl")
        assert [a.name for a in await links.accounts("ldap")] == ["dora"]
        assert await links.managed("carl") == {"devs": "contributor"}
    async with open_stores(source) as (catalog_a, activity_a), \
            open_stores(target) as (catalog_b, activity_b):
        assert await catalog_b.tags("web/app", after=None, limit=9) == \
            await catalog_a.tags("web/app", after=None, limit=9)
        assert await catalog_b.repository("web/app") == await catalog_a.repository("web/app")
        assert await catalog_b.apply([("e1", [])]) == 0  # applied ids came along
        where = ActivityFilter(visible=frozenset({"web"}))
        assert await activity_b.search(where, before=None, limit=9) == \
            await activity_a.search(where, before=None, limit=9)
        # New entries continue the imported sequence, so live streams resume where they were.
        await activity_b.record([Activity(id="a4", type="tag.deleted", actor=None,
                                          repository=None, namespace="", tag=None, digest=None,
                                          time=T0, address=None, user_agent=None)])
        assert [seq for seq, _ in await activity_b.since(3, 9)] == [4]


async def test_an_import_into_a_store_that_holds_data_is_refused(
    tmp_path: Path, target: Config
) -> None:
    source = sqlite_config(tmp_path / "sqlite")
    await fill(source)
    dump = io.StringIO()
    await export_stores(source, dump, ["auth"])
    async with open_auth_store(target) as auth:
        await auth.create_user(User("someone", "", admin=False, enabled=True), "h")
    dump.seek(0)
    with pytest.raises(Conflict, match="the auth store of this configuration") as refused:
        await import_stores(target, dump)
    assert refused.value.code == "store_not_empty"
    async with open_auth_store(target) as auth:
        assert [u.name for u in await auth.list_users(after=None, limit=9)] == ["someone"]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "line 3: not JSON"),
        ('{"store": "search", "kind": "x", "record": {}}', "line 3: unknown store 'search'"),
        ('{"store": "auth", "kind": "password", "record": {}}',
         "line 3: unknown record kind 'password'"),
        ('{"store": "auth", "kind": "team", "record": {"name": "ops"}}',
         "missing ['created_at', 'description']"),
        ('{"store": "auth", "kind": "member", "record": {"team": "d", "user": "c", "role": "x"}}',
         "member.role: expected one of"),
        (json.dumps({"store": "auth", "kind": "team",
                     "record": {"name": "o", "description": "", "created_at": True}}),
         "team.created_at: expected num, got a boolean"),
    ],
)
async def test_a_bad_line_is_named_and_nothing_is_imported(
    tmp_path: Path, target: Config, line: str, problem: str
) -> None:
    user = {"name": "zed", "email": "", "kind": "user", "password_hash": "h", "admin": False,
            "enabled": True, "failed_logins": 0, "locked_until": None, "credential_epoch": 0,
            "created_at": 1.0, "owner_team": None}
    text = "\n".join([
        json.dumps({"dockyard_export": 1, "stores": ["auth"]}),
        json.dumps({"store": "auth", "kind": "user", "record": user}),
        line,
    ]) + "\n"
    with pytest.raises(Invalid) as refused:
        await import_stores(target, io.StringIO(text))
    assert problem in refused.value.message
    async with open_auth_store(target) as auth:
        assert await auth.is_empty()


async def test_an_import_needs_the_export_header(target: Config) -> None:
    with pytest.raises(Invalid, match="line 1: not a Dockyard export"):
        await import_stores(target, io.StringIO('{"store": "auth"}\n'))


async def test_the_commands_move_the_stores_between_configurations(
    tmp_path: Path, mongo_uri: str, mongo_database_name: str
) -> None:
    source = sqlite_config(tmp_path / "data")
    await fill(source)
    config_file = tmp_path / "data" / "dockyard.toml"
    config_file.write_text(f'[webhook]\nsecret = "{SECRET}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    exported = await asyncio.to_thread(
        subprocess.run, [str(DOCKYARD), "export", "--config", str(config_file)],
        env=env, capture_output=True, check=False, timeout=60)
    assert exported.returncode == 0, exported.stderr.decode()
    assert (b"exported auth 15 record(s), directory 3 record(s), catalog 7 record(s),"
            b" activity 3") in exported.stderr
    mongo = {"DOCKYARD_STORE": "mongodb", "DOCKYARD_MONGODB_URI": mongo_uri,
             "DOCKYARD_MONGODB_DATABASE": mongo_database_name}
    imported = await asyncio.to_thread(
        subprocess.run, [str(DOCKYARD), "import", "--config", str(config_file)],
        input=exported.stdout, env=env | mongo, capture_output=True, check=False, timeout=60)
    assert imported.returncode == 0, imported.stderr.decode()
    assert b"imported into mongodb: auth 15 record(s)" in imported.stderr
    target = mongo_config(tmp_path / "data", mongo_uri, mongo_database_name)
    assert await dumps(target) == await dumps(source)
    again = await asyncio.to_thread(
        subprocess.run, [str(DOCKYARD), "import", "--config", str(config_file)],
        input=exported.stdout, env=env | mongo, capture_output=True, check=False, timeout=60)
    assert again.returncode == 2
    assert b"already holds data" in again.stderr
