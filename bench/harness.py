"""What the benchmarks share: Dockyard as a child process, a seeded registry, figures, tables.

The benchmarks are scripts run from the repository root (``.venv/bin/python bench/NAME.py``),
so ``bench/`` is on ``sys.path`` and this module is imported as ``harness``. It puts the
repository root on ``sys.path`` too, so the test support code (a real registry, OCI layouts,
an initialised data directory) is reused rather than copied. Being first on ``sys.path``, a
file here named like a standard-library module (``token.py``, ``types.py``…) shadows it for
every script in the folder: ``import asyncio`` then fails before any benchmark code runs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from services.core.config import Config  # noqa: E402 - after the sys.path set-up
from tests.support.dockyard import ADMIN_PASSWORD, admin_auth, initialised  # noqa: E402
from tests.support.images import build_oci_image, read_blob  # noqa: E402
from tests.support.registry import RegistryProcess, free_port, skopeo_copy  # noqa: E402

__all__ = [
    "ADMIN_PASSWORD",
    "DockyardServer",
    "RegistryProcess",
    "SeededImage",
    "admin_auth",
    "build_oci_image",
    "describe_machine",
    "filesystem_of",
    "free_port",
    "initialised",
    "percentile",
    "print_table",
    "seed_repositories",
    "skopeo_copy",
    "spread",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class DockyardServer:
    """``dockyard serve --config …`` in a child process, so no load generator shares its loop.

    ``env`` holds ``DOCKYARD_<SECTION>_<KEY>`` overrides, the same ones given to
    ``initialised`` so the child reads the configuration the benchmark reports.
    """

    def __init__(self, config: Config, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.url = f"http://{config.server.listen}"
        self.log_path = config.server.data_dir / "dockyard.log"
        # /metrics answers only an admin or the metrics token; the benchmarks read it by token.
        self._metrics_token = secrets.token_urlsafe(24)
        self._env = {**os.environ, "DOCKYARD_METRICS_TOKEN": self._metrics_token, **(env or {})}
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("Dockyard is not running")
        return self._process.pid

    def start(self, timeout: float = 30.0) -> None:
        command = [str(Path(sys.executable).parent / "dockyard"), "serve", "--config",
                   str(self.config.server.data_dir / "dockyard.toml")]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self._env,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"dockyard serve exited early; log tail:\n{self.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                # 503 (a check failing, e.g. no registry) is still a server that answers.
                httpx.get(f"{self.url}/api/v1/health", timeout=0.5)
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dockyard serve did not answer within {timeout}s")
            time.sleep(0.05)

    def stop(self, timeout: float = 15.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process (all its threads) has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        # Fields 14 and 15 of proc(5) stat; the split starts at field 3.
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def metrics(self) -> dict[str, float]:
        """``/metrics`` as ``{'name{labels}': value}``."""
        response = httpx.get(f"{self.url}/metrics", timeout=10,
                             headers={"Authorization": f"Bearer {self._metrics_token}"})
        text = response.raise_for_status().text
        found = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                found[name] = float(value)
        return found

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


@dataclass(frozen=True)
class SeededImage:
    """A small OCI image present in the registry under every seeded repository."""

    digest: str
    size: int
    references: tuple[dict[str, Any], ...]  # config and layer descriptors


def seed_repositories(registry_url: str, names: Sequence[str], scratch: Path) -> SeededImage:
    """Put one small image into each repository through the registry API (spec/api.md).

    Blobs are uploaded once and mounted into the other repositories, so seeding hundreds of
    repositories takes seconds, not the minutes one skopeo run per repository would.
    """
    layout = scratch / "seed-layout"
    digest = build_oci_image(layout, "seed", [{"etc/motd": b"dockyard bench\n"}], salt="bench")
    manifest = read_blob(layout, digest)
    document = json.loads(manifest)
    blobs = [document["config"], *document["layers"]]
    first = names[0]
    with httpx.Client(base_url=registry_url, timeout=30) as client:
        for index, name in enumerate(names):
            for blob in blobs:
                if index == 0:
                    _upload(client, name, blob["digest"], read_blob(layout, blob["digest"]))
                else:
                    client.post(f"/v2/{name}/blobs/uploads/",
                                params={"mount": blob["digest"], "from": first}
                                ).raise_for_status()
            client.put(f"/v2/{name}/manifests/seed", content=manifest,
                       headers={"Content-Type": OCI_MANIFEST}).raise_for_status()
    references = tuple({"mediaType": b["mediaType"], "digest": b["digest"], "size": b["size"]}
                       for b in blobs)
    return SeededImage(digest, len(manifest), references)


def _upload(client: httpx.Client, name: str, digest: str, data: bytes) -> None:
    started = client.post(f"/v2/{name}/blobs/uploads/")
    started.raise_for_status()
    # Location carries the upload's state in its query; the digest is added to it, not swapped in.
    location = httpx.URL(started.headers["Location"]).copy_add_param("digest", digest)
    client.put(location, content=data,
               headers={"Content-Type": "application/octet-stream"}).raise_for_status()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def spread(values: Sequence[float]) -> str:
    """``min to max`` of repeated runs, for the summary lines."""
    return f"{min(values):,.0f} to {max(values):,.0f}" if values else "-"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Left-aligned first column, right-aligned figures."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))


def filesystem_of(path: Path) -> str:
    """The mount type holding ``path`` (fsync costs differ wildly between ext4 and tmpfs)."""
    best, kind = "", "?"
    resolved = str(path.resolve())
    for entry in Path("/proc/mounts").read_text().splitlines():
        _, mount_point, fs_type, *_ = entry.split()
        inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > len(best):
            best, kind = mount_point, fs_type
    return f"{kind} ({best})"


def describe_machine(data_dir: Path) -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} CPUs, load average {load}; data on {filesystem_of(data_dir)};"
            f" Python {sys.version.split()[0]}")
