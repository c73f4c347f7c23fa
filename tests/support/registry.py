"""A real Docker Distribution registry for tests, and skopeo to push to it.

``RegistryProcess`` writes a registry configuration (docs/configuration.md of
distribution/distribution 2.8) into its work directory, runs ``docker-registry serve`` on a free
loopback port with filesystem storage and deletes enabled, and waits until ``GET /v2/`` answers.
The registry's log goes to a file so a failed start or test can show its tail.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import pytest
import yaml

__all__ = [
    "REGISTRY_BINARY",
    "SKOPEO_BINARY",
    "NotificationEndpoint",
    "RegistryProcess",
    "SkopeoError",
    "free_port",
    "plant_manifest",
    "require_registry_tools",
    "skopeo_copy",
    "skopeo_delete",
]

REGISTRY_BINARY = "/usr/bin/docker-registry"
SKOPEO_BINARY = "skopeo"


@dataclass(frozen=True)
class NotificationEndpoint:
    """One ``notifications.endpoints`` entry, with short timings so retries happen in tests."""

    url: str
    headers: Mapping[str, Sequence[str]] = field(default_factory=dict)
    name: str = "dockyard"
    timeout: str = "1s"
    threshold: int = 3
    backoff: str = "200ms"

    def as_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "headers": {name: list(values) for name, values in self.headers.items()},
            "timeout": self.timeout,
            "threshold": self.threshold,
            "backoff": self.backoff,
        }


class RegistryProcess:
    """``docker-registry serve`` on 127.0.0.1:<free port>; use ``with`` or start()/stop().

    ``auth`` is the registry's ``auth`` section as-is (e.g. ``{"token": {...}}``). Two processes
    given the same ``storage`` directory see the same repositories (there is no cache).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        notifications: Sequence[NotificationEndpoint] = (),
        auth: Mapping[str, Any] | None = None,
        storage: Path | None = None,
        binary: str = REGISTRY_BINARY,
        config_file: Path | None = None,
    ) -> None:
        """``config_file``: run with that file as it is (e.g. the one ``dockyard init`` wrote)."""
        self.workdir = workdir
        self._config_file = config_file
        self.storage = storage if storage is not None else workdir / "storage"
        self.config_path = workdir / "registry.yml"
        self.log_path = workdir / "registry.log"
        self.port = free_port()
        if config_file is not None:
            given = yaml.safe_load(config_file.read_text())
            self.port = int(given["http"]["addr"].rpartition(":")[2])
            self.storage = Path(given["storage"]["filesystem"]["rootdirectory"])
            self.config_path = config_file
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self._notifications = tuple(notifications)
        self._auth = dict(auth) if auth is not None else None
        self._binary = binary
        self._process: subprocess.Popen[bytes] | None = None

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text"},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": True},
                # No background upload purging: tests are short and the goroutine only adds noise.
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": self.host, "secret": "dockyard-tests-registry-secret"},
        }
        if self._notifications:
            config["notifications"] = {
                "events": {"includereferences": True},
                "endpoints": [endpoint.as_config() for endpoint in self._notifications],
            }
        if self._auth is not None:
            config["auth"] = self._auth
        return config

    def start(self, timeout: float = 10.0) -> None:
        if self._process is not None:
            raise RuntimeError(f"registry at {self.url} is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage.mkdir(parents=True, exist_ok=True)
        if self._config_file is None:
            self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [self._binary, "serve", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_until_ready(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while True:
            returncode = self._process.poll()
            if returncode is not None:
                raise RuntimeError(
                    f"docker-registry exited with status {returncode} before answering;"
                    f" config {self.config_path}, log tail:\n{self.log_tail()}"
                )
            try:
                # 401 means token auth is on, which is still a registry that answers.
                if httpx.get(f"{self.url}/v2/", timeout=0.5).status_code in {200, 401}:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"docker-registry did not answer GET {self.url}/v2/ within {timeout}s;"
                    f" log tail:\n{self.log_tail()}"
                )
            time.sleep(0.05)


class SkopeoError(RuntimeError):
    """skopeo failed; the message carries its command line and stderr."""


def skopeo_copy(
    src: str,
    dest: str,
    *,
    creds: str | None = None,
    format: str | None = None,  # noqa: A002 -- named after skopeo's --format
    all: bool = False,  # noqa: A002 -- named after skopeo's --all
    dest_token: str | None = None,
    timeout: float = 60.0,
) -> str:
    """``skopeo copy SRC DEST``; return the digest of the manifest written to DEST.

    ``creds`` (``user:password``) is used for whichever side is a ``docker://`` reference.
    ``format`` is ``oci``, ``v2s2`` …; ``all`` copies every platform of an index.
    ``dest_token`` is a registry token to push with, instead of asking the token endpoint.
    """
    args = ["copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false"]
    if creds is not None and src.startswith("docker://"):
        args += ["--src-creds", creds]
    if creds is not None and dest.startswith("docker://"):
        args += ["--dest-creds", creds]
    if format is not None:
        args += ["--format", format]
    if all:
        args.append("--all")
    if dest_token is not None:
        args += ["--dest-registry-token", dest_token]
    with tempfile.TemporaryDirectory(prefix="dockyard-skopeo-") as scratch:
        digest_file = Path(scratch) / "digest"
        _skopeo([*args, "--digestfile", str(digest_file), src, dest], timeout)
        return digest_file.read_text().strip()


def skopeo_delete(ref: str, creds: str | None = None, *, timeout: float = 60.0) -> None:
    """``skopeo delete REF``: resolves a tag to its digest and deletes the manifest."""
    args = ["delete", "--tls-verify=false"]
    if creds is not None:
        args += ["--creds", creds]
    _skopeo([*args, ref], timeout)


def require_registry_tools() -> None:
    """Skip the calling test when the registry binary or skopeo is missing."""
    if not Path(REGISTRY_BINARY).is_file():
        pytest.skip("docker-registry not installed: run make test, which installs it")
    if shutil.which(SKOPEO_BINARY) is None:
        pytest.skip("skopeo not installed: run make test, which installs it")


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _skopeo(args: list[str], timeout: float) -> None:
    # --insecure-policy: tests must not depend on the machine's /etc/containers/policy.json.
    command = [SKOPEO_BINARY, "--insecure-policy", *args]
    try:
        result = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        stderr = (exc.stderr or b"").decode(errors="replace")
        raise SkopeoError(f"{' '.join(command)} timed out after {timeout}s:\n{stderr}") from None
    if result.returncode != 0:
        raise SkopeoError(
            f"{' '.join(command)} failed with status {result.returncode}:\n"
            f"{result.stderr.decode(errors='replace')}"
        )


def plant_manifest(storage: Path, repository: str, tag: str, body: bytes) -> str:
    """Write a manifest straight into a registry's filesystem storage, tagged, as distribution
    lays it out (registry/storage/paths.go): for what no client can push, such as a manifest
    over the 4 MiB the registry refuses on PUT. Returns its digest."""
    hex_digest = hashlib.sha256(body).hexdigest()
    digest = f"sha256:{hex_digest}"
    root = storage / "docker" / "registry" / "v2"
    blob = root / "blobs" / "sha256" / hex_digest[:2] / hex_digest / "data"
    manifests = root / "repositories" / repository / "_manifests"
    links = [manifests / "revisions" / "sha256" / hex_digest / "link",
             manifests / "tags" / tag / "current" / "link",
             manifests / "tags" / tag / "index" / "sha256" / hex_digest / "link"]
    for path, content in [(blob, body), *((link, digest.encode()) for link in links)]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return digest
