"""The ``dockyard`` command: init, serve, up and sync, as an operator runs them.

``init`` runs in-process through ``services.cli.main`` (the console script only wraps it in
``sys.exit``); serve, up and sync run as child processes of the installed script, against a real
registry where they need one.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from services.cli import main
from services.core.config import Config, load_config
from services.core.web import EVENT_LOG
from services.ingest.consumers import REGISTRY_EVENTS
from tests.support.dockyard import (
    ADMIN_PASSWORD,
    Dockyard,
    admin_auth,
    initialised,
    running_dockyard,
)
from tests.support.images import build_oci_image
from tests.support.registry import (
    RegistryProcess,
    free_port,
    require_registry_tools,
    skopeo_copy,
    skopeo_delete,
)
from tests.support.waiting import eventually

DOCKYARD = Path(sys.executable).with_name("dockyard")
PASSWORD_LINE = "admin password (shown once): "
ADMIN = f"admin:{ADMIN_PASSWORD}"
SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


# --- helpers -------------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without DOCKYARD_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    return {**env, **extra}


def init(
    capsys: pytest.CaptureFixture[str], data_dir: Path, *options: str,
    registry_url: str = "http://127.0.0.1:5000", listen: str = "127.0.0.1:5050",
) -> tuple[int, str, str]:
    code = main(["init", "--data-dir", str(data_dir), "--registry-url", registry_url,
                 "--listen", listen, *options])
    out, err = capsys.readouterr()
    return code, out, err


async def init_async(
    capsys: pytest.CaptureFixture[str], data_dir: Path, *options: str, listen: str,
) -> tuple[int, str, str]:
    """``init`` from an async test: it runs its own event loop, so in a thread of its own."""
    return await asyncio.to_thread(init, capsys, data_dir, *options, listen=listen)


def hashes(directory: Path) -> dict[str, str]:
    return {str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(directory.rglob("*")) if path.is_file()}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def signs_in(dockyard: Dockyard, password: str) -> bool:
    response = await dockyard.client.get("/api/v1/activities", headers=basic("admin", password))
    assert response.status_code in {200, 401}, response.text
    return response.status_code == 200


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def signing_keys(config: Config) -> list[Path]:
    return sorted(config.path(config.auth.keys_dir).glob("*.key"))


async def run(*args: str, env: dict[str, str] | None = None,
              timeout: float = 60) -> tuple[int, str, str]:
    """``dockyard ARGS`` as a child process, without blocking the event loop."""
    process = await asyncio.create_subprocess_exec(
        str(DOCKYARD), *args, env=env if env is not None else clean_env(),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def port_answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --- init ----------------------------------------------------------------------------------


@pytest.fixture
def admin_password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DOCKYARD_ADMIN_PASSWORD", ADMIN_PASSWORD)
    return ADMIN_PASSWORD


def test_init_writes_config_registry_config_and_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], admin_password: str
) -> None:
    data = tmp_path / "data"
    code, out, err = init(capsys, data, registry_url="http://127.0.0.1:5123",
                          listen="127.0.0.1:5124")
    assert (code, err) == (0, "")
    assert f"wrote {data / 'dockyard.toml'}" in out
    assert PASSWORD_LINE not in out  # it came from the environment: nothing to show

    # dockyard.toml holds the webhook secret: owner only.
    assert mode(data / "dockyard.toml") == 0o600
    config = load_config(data / "dockyard.toml", env={})
    assert config.server.listen == "127.0.0.1:5124"
    assert config.registry.url == "http://127.0.0.1:5123"
    secret = config.webhook.secret
    assert len(secret) >= 32

    registry = yaml.safe_load((data / "registry.yml").read_text())
    assert mode(data / "registry.yml") == 0o600  # it holds the secret too
    assert registry["http"]["addr"] == "127.0.0.1:5123"
    root = Path(registry["storage"]["filesystem"]["rootdirectory"])
    assert root.is_absolute()
    assert root.is_relative_to(data.resolve())
    assert registry["storage"]["delete"] == {"enabled": True}
    (endpoint,) = registry["notifications"]["endpoints"]
    assert endpoint["url"] == "http://127.0.0.1:5124/v2/webhooks/events"
    assert endpoint["headers"]["Authorization"] == [f"Bearer {secret}"]

    (key_path,) = signing_keys(config)
    assert mode(key_path) == 0o600
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    certificate_pem = key_path.with_suffix(".crt").read_bytes()
    certificate = x509.load_pem_x509_certificate(certificate_pem)
    assert certificate.public_key().public_bytes(*SPKI) == key.public_key().public_bytes(*SPKI)
    # The registry verifies tokens with the certificates in the bundle it is pointed at.
    bundle = config.path(config.auth.certificate_bundle)
    assert certificate_pem in bundle.read_bytes()
    token = registry["auth"]["token"]
    assert token["rootcertbundle"] == str(bundle)
    assert token["realm"] == "http://127.0.0.1:5124/v2/token"


def test_init_points_the_registry_at_the_external_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], admin_password: str
) -> None:
    data = tmp_path / "data"
    code, _, _ = init(capsys, data, "--external-url", "http://dockyard.internal:8080/")
    assert code == 0
    registry = yaml.safe_load((data / "registry.yml").read_text())
    assert registry["notifications"]["endpoints"][0]["url"] == (
        "http://dockyard.internal:8080/v2/webhooks/events")
    assert registry["auth"]["token"]["realm"] == "http://dockyard.internal:8080/v2/token"


def test_an_ipv6_registry_address_is_bracketed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], admin_password: str
) -> None:
    code, _, _ = init(capsys, tmp_path / "data", registry_url="http://[::1]:5000")
    assert code == 0
    registry = yaml.safe_load((tmp_path / "data" / "registry.yml").read_text())
    assert registry["http"]["addr"] == "[::1]:5000"  # what Go's net.Listen accepts


async def test_the_admin_password_from_the_environment_signs_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], admin_password: str
) -> None:
    code, _, _ = await init_async(capsys, tmp_path / "data", listen=f"127.0.0.1:{free_port()}")
    assert code == 0
    async with running_dockyard(load_config(tmp_path / "data" / "dockyard.toml", env={})) as dy:
        assert await signs_in(dy, admin_password)
        assert not await signs_in(dy, admin_password + "x")


async def test_a_generated_password_is_printed_once_stored_nowhere_and_signs_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKYARD_ADMIN_PASSWORD", raising=False)
    data = tmp_path / "data"
    code, out, _ = await init_async(capsys, data, listen=f"127.0.0.1:{free_port()}")
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith(PASSWORD_LINE)]
    assert len(lines) == 1
    assert out.count(PASSWORD_LINE) == 1
    password = lines[0].removeprefix(PASSWORD_LINE)
    assert len(password) >= 16
    for path in data.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), f"password stored in {path}"
    async with running_dockyard(load_config(data / "dockyard.toml", env={})) as dy:
        assert await signs_in(dy, password)
        assert not await signs_in(dy, ADMIN_PASSWORD)


def test_init_refuses_to_overwrite_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], admin_password: str
) -> None:
    data = tmp_path / "data"
    assert init(capsys, data)[0] == 0
    before = hashes(data)
    code, out, err = init(capsys, data, registry_url="http://127.0.0.1:6000")
    assert code == 2
    assert out == ""
    assert "--force" in err
    assert str(data / "dockyard.toml") in err
    assert hashes(data) == before


async def test_init_force_makes_secret_keys_and_password_anew(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    listen = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("DOCKYARD_ADMIN_PASSWORD", "the-first-password")
    assert (await init_async(capsys, data, listen=listen))[0] == 0
    first = load_config(data / "dockyard.toml", env={})
    first_key = signing_keys(first)[-1].read_bytes()

    monkeypatch.setenv("DOCKYARD_ADMIN_PASSWORD", "the-second-password")
    code, _, err = await init_async(capsys, data, "--force", "--registry-url",
                                    "http://127.0.0.1:6001", listen=listen)
    assert (code, err) == (0, "")
    second = load_config(data / "dockyard.toml", env={})
    assert second.webhook.secret != first.webhook.secret
    assert second.registry.url == "http://127.0.0.1:6001"
    newest = signing_keys(second)[-1]  # the newest key signs
    assert newest.read_bytes() != first_key
    assert mode(newest) == 0o600
    registry = yaml.safe_load((data / "registry.yml").read_text())
    assert registry["http"]["addr"] == "127.0.0.1:6001"
    assert registry["notifications"]["endpoints"][0]["headers"]["Authorization"] == [
        f"Bearer {second.webhook.secret}"]
    async with running_dockyard(second) as dy:
        assert await signs_in(dy, "the-second-password")
        assert not await signs_in(dy, "the-first-password")


@pytest.mark.parametrize(
    "url",
    ["registry:5000", "ftp://127.0.0.1:5000", "http://127.0.0.1", "http://:5000",
     "http://127.0.0.1:99999", "http://127.0.0.1:port", "http://127.0.0.1:0"],
)
def test_a_bad_registry_url_is_refused_clearly_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], admin_password: str, url: str
) -> None:
    code, out, err = init(capsys, tmp_path / "data", registry_url=url)
    assert (code, out) == (2, "")
    assert err == f"dockyard: --registry-url must look like http://HOST:PORT, not {url!r}\n"
    assert not (tmp_path / "data").exists()


def test_a_bad_listen_address_is_refused_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], admin_password: str
) -> None:
    code, _, err = init(capsys, tmp_path / "data", listen="localhost")
    assert code == 2
    assert "server.listen" in err
    assert not (tmp_path / "data").exists()


# --- serve ---------------------------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return initialised(tmp_path / "data", "http://127.0.0.1:9")


@pytest.mark.parametrize(
    ("env", "toml_extra", "named"),
    [
        ({"DOCKYARD_WEBHOOK_MAX_BODY_BYTES": "lots"}, "", "webhook.max_body_bytes:"),
        ({}, "\n[webhook_extra]\nx = 1\n", "webhook_extra: unknown key"),
        ({}, '\n[log]\nlevel = "loud"\n', "log.level:"),
    ],
    ids=["bad env value", "unknown section", "bad file value"],
)
async def test_serve_with_a_broken_config_exits_2_naming_the_key(
    config: Config, env: dict[str, str], toml_extra: str, named: str
) -> None:
    path = config.server.data_dir / "dockyard.toml"
    path.write_text(path.read_text() + toml_extra)
    code, out, err = await run("serve", "--config", str(path), env=clean_env(**env), timeout=30)
    assert (code, out) == (2, "")
    assert err.startswith("dockyard: invalid configuration: ")
    assert named in err
    assert not port_answers(config.server.port)


async def test_serve_without_a_config_says_to_run_init(tmp_path: Path) -> None:
    code, _, err = await run("serve", "--config", str(tmp_path / "dockyard.toml"), timeout=30)
    assert code == 2
    assert "dockyard init" in err


# --- up ------------------------------------------------------------------------------------


class Up:
    """``dockyard up`` as the leader of its own process group, as a shell runs a command."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.registry_port = free_port()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.registry_host = f"127.0.0.1:{self.registry_port}"
        self.data_dir = data_dir
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(DOCKYARD), "up", "--data-dir", str(data_dir), "--registry-url",
                 f"http://{self.registry_host}", "--listen", f"127.0.0.1:{self.port}"],
                env=clean_env(DOCKYARD_ADMIN_PASSWORD=ADMIN_PASSWORD),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def registry_pid(self) -> int:
        for line in self.log().splitlines():
            if line.startswith("{") and json.loads(line).get("message") == "registry started":
                return int(json.loads(line)["pid"])
        raise AssertionError(f"no 'registry started' in the log:\n{self.log()}")

    async def healthy(self, client: httpx.AsyncClient) -> dict[str, Any]:
        async def probe() -> dict[str, Any]:
            if self.process.poll() is not None:
                raise AssertionError(f"dockyard up exited with {self.process.returncode}:\n"
                                     f"{self.log()}")
            try:
                response = await client.get(f"{self.url}/api/v1/health")
            except httpx.TransportError:
                return {}
            return dict(response.json()) if response.status_code == 200 else {}

        return await eventually(probe, bool, timeout=30, what="dockyard up healthy")

    async def exited(self, timeout: float = 10) -> int:
        returncode = await asyncio.to_thread(self.process.wait, timeout)
        return int(returncode)

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    require_registry_tools()
    running = Up(tmp_path / "data", tmp_path / "up.log")
    yield running
    running.close()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.registry
@pytest.mark.slow
async def test_up_runs_registry_and_dockyard_and_ctrl_c_stops_both(
    up: Up, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(timeout=10, headers={"Authorization": admin_auth()}) as client:
        health = await up.healthy(client)
        assert health["checks"]["registry"] == {"ok": True}
        # 401: the registry.yml init wrote turns on token auth; it still answers.
        assert (await client.get(f"http://{up.registry_host}/v2/")).status_code in {200, 401}

        layout = tmp_path / "layout"
        digest = build_oci_image(layout, "one", [{"etc/os-release": b"ID=debian\n"}], salt="up")
        await asyncio.to_thread(skopeo_copy, f"oci:{layout}:one",
                                f"docker://{up.registry_host}/admin/up:1.0", creds=ADMIN)

        async def tags() -> dict[str, str]:
            response = await client.get(f"{up.url}/api/v1/tags",
                                        params={"repository": "admin/up"})
            if response.status_code == 404:
                return {}
            response.raise_for_status()
            return {tag["name"]: tag["digest"] for tag in response.json()["items"]}

        assert await eventually(tags, bool, what="the pushed tag in the tags API") == {
            "1.0": digest}

    registry = up.registry_pid()
    # Ctrl-C in a terminal: SIGINT to the foreground process group, Dockyard and registry alike.
    os.killpg(up.process.pid, signal.SIGINT)
    assert await up.exited() == 0, up.log()
    assert gone(registry)
    assert not port_answers(up.registry_port)
    assert not port_answers(up.port)
    # The registry's own log comes through, less the webhook secret it prints at start.
    output = up.log()
    secret = load_config(up.data_dir / "dockyard.toml", env={}).webhook.secret
    assert "configuring endpoint dockyard" in output
    assert "[webhook secret redacted]" in output
    assert secret not in output


@pytest.mark.registry
async def test_up_stops_the_registry_when_only_dockyard_is_told_to_stop(up: Up) -> None:
    async with httpx.AsyncClient(timeout=10, headers={"Authorization": admin_auth()}) as client:
        await up.healthy(client)
    registry = up.registry_pid()
    up.process.send_signal(signal.SIGTERM)  # `kill PID`, as a supervisor does
    assert await up.exited() == 0, up.log()
    assert gone(registry)
    assert not port_answers(up.registry_port)


@pytest.mark.registry
async def test_up_fails_when_the_registry_cannot_start(tmp_path: Path) -> None:
    require_registry_tools()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        code, out, err = await run(
            "up", "--data-dir", str(tmp_path / "data"), "--registry-url", f"http://127.0.0.1:{busy}",
            "--listen", f"127.0.0.1:{free_port()}",
            env=clean_env(DOCKYARD_ADMIN_PASSWORD=ADMIN_PASSWORD), timeout=30,
        )
    assert code == 1, out + err
    assert "the registry exited with status 1" in err


# --- sync ----------------------------------------------------------------------------------


@pytest.fixture
def quiet_registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    """A registry whose notifications never reach Dockyard: it has none configured."""
    require_registry_tools()
    with RegistryProcess(tmp_path / "registry") as process:
        yield process


@pytest.fixture
def synced_config(tmp_path: Path, quiet_registry: RegistryProcess) -> Config:
    return initialised(tmp_path / "data", quiet_registry.url)


@pytest.fixture
async def dockyard(synced_config: Config) -> AsyncIterator[Dockyard]:
    async with running_dockyard(synced_config) as running:
        yield running


async def sync(config: Config) -> str:
    code, out, err = await run("sync", "--config", str(config.server.data_dir / "dockyard.toml"))
    assert code == 0, err
    return out


async def catalog_tags(dockyard: Dockyard, repository: str) -> dict[str, str]:
    response = await dockyard.client.get("/api/v1/tags", params={"repository": repository})
    if response.status_code == 404:
        return {}
    response.raise_for_status()
    return {tag["name"]: tag["digest"] for tag in response.json()["items"]}


async def activities(dockyard: Dockyard) -> list[dict[str, Any]]:
    """Registry activity, oldest first (sign-ins and other services' entries left out)."""
    params = {"limit": "500", "type": "tag.pushed,tag.deleted,manifest.deleted"}
    response = await dockyard.client.get("/api/v1/activities", params=params)
    response.raise_for_status()
    return list(reversed(response.json()["items"]))


async def log_length(dockyard: Dockyard) -> int:
    subscription = await dockyard.app[EVENT_LOG].subscribe(REGISTRY_EVENTS, "test-reader")
    try:
        return len(await subscription.fetch(max_records=10_000, timeout=0.2))
    finally:
        await subscription.close()


@pytest.mark.registry
@pytest.mark.slow
async def test_sync_brings_in_what_notifications_missed_and_then_appends_nothing(
    dockyard: Dockyard, synced_config: Config, quiet_registry: RegistryProcess, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    pushed = {
        ("team/app", "1.0"): build_oci_image(layout, "a", [{"a": b"1"}], salt="sync-a"),
        ("team/app", "2.0"): build_oci_image(layout, "b", [{"b": b"2"}], salt="sync-b"),
        ("team/tools", "latest"): build_oci_image(layout, "c", [{"c": b"3"}], salt="sync-c"),
    }
    for (repository, tag), source in zip(pushed, ("a", "b", "c"), strict=True):
        await asyncio.to_thread(skopeo_copy, f"oci:{layout}:{source}",
                                f"docker://{quiet_registry.host}/{repository}:{tag}")
    assert await catalog_tags(dockyard, "team/app") == {}  # nothing told Dockyard

    out = await sync(synced_config)
    assert "2 repositories, 3 tags; 3 change(s) appended" in out
    app = await eventually(lambda: catalog_tags(dockyard, "team/app"), lambda t: len(t) == 2,
                           what="team/app synced")
    assert app == {"1.0": pushed["team/app", "1.0"], "2.0": pushed["team/app", "2.0"]}
    tools = await eventually(lambda: catalog_tags(dockyard, "team/tools"), bool)
    assert tools == {"latest": pushed["team/tools", "latest"]}
    story = await eventually(lambda: activities(dockyard), lambda a: len(a) == 3)
    assert {(a["type"], a["repository"], a["tag"], a["synthetic"]) for a in story} == {
        ("tag.pushed", repository, tag, True) for repository, tag in pushed}

    # Behind Dockyard's back: the registry has no notifications to send.
    await asyncio.to_thread(skopeo_delete, f"docker://{quiet_registry.host}/team/app:2.0")
    assert "2.0" in await catalog_tags(dockyard, "team/app")

    out = await sync(synced_config)
    assert "2 repositories, 2 tags; 1 change(s) appended" in out
    app = await eventually(lambda: catalog_tags(dockyard, "team/app"), lambda t: "2.0" not in t,
                           what="team/app:2.0 gone")
    assert app == {"1.0": pushed["team/app", "1.0"]}
    story = await eventually(lambda: activities(dockyard), lambda a: len(a) == 4)
    deleted = story[-1]
    assert (deleted["type"], deleted["repository"], deleted["tag"], deleted["synthetic"]) == (
        "tag.deleted", "team/app", "2.0", True)

    before = await log_length(dockyard)
    out = await sync(synced_config)
    assert "2 repositories, 2 tags; 0 change(s) appended" in out
    assert await log_length(dockyard) == before
    assert len(await activities(dockyard)) == 4


async def test_sync_with_the_registry_down_exits_1_naming_it(config: Config) -> None:
    code, _, err = await run("sync", "--config", str(config.server.data_dir / "dockyard.toml"))
    assert code == 1
    assert "registry at http://127.0.0.1:9" in err
    assert "registry.url" in err
