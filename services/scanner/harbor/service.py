"""Dockyard as a Harbor scanner adapter: accepted scan requests, run in the background.

Harbor sends the registry URL and an ``authorization`` (robot credentials, ``Basic …``, or a
token, ``Bearer …``); the adapter reads the artifact from *that* registry with it, exactly as
the spec's Registry object describes (scanner-adapter-openapi-v1.1.yaml): Basic credentials are
exchanged for a token at the realm of the registry's Bearer challenge (docs/spec/auth/token.md).
Layers are streamed through the same reader, detectors and budgets (a child process per scan,
services/scanner/sandbox.py) as Dockyard's own scans and the inventory matched by the
embedded engine.

Jobs live in memory: Harbor polls a report for minutes after asking for it and stores it
itself, so an adapter restart only makes Harbor ask again. Finished jobs are kept an hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import httpx

from services.core.registry import (
    ManifestNotFound,
    RegistryClient,
    RegistryError,
    TokenProvider,
    parse_bearer_challenge,
)
from services.ingest.manifests import ArtifactKind, InvalidManifestError, SchemaKind, describe
from services.scanner.harbor.wire import ScanRequest
from services.scanner.limits import ScanLimits
from services.scanner.matcher import NoVulnerabilityData
from services.scanner.models import Finding
from services.scanner.ports import Matcher
from services.scanner.sandbox import SandboxError, read_inventory

__all__ = ["AdapterJobs", "Job", "ScanFailed", "registry_tokens", "scan_artifact"]

log = logging.getLogger("dockyard.scanner.harbor")

KEEP_SECONDS = 3600
MAX_JOBS = 10_000
Scan = Callable[[ScanRequest], Awaitable[list[Finding]]]


class ScanFailed(Exception):
    """The artifact could not be scanned; the message says why (Harbor shows it)."""


@dataclass
class Job:
    request: ScanRequest
    status: Literal["pending", "done", "failed"] = "pending"
    findings: list[Finding] = field(default_factory=list)
    error: str = ""
    generated_at: datetime | None = None
    finished: float | None = None


class AdapterJobs:
    def __init__(self, scan: Scan, *, concurrency: int = 2, timeout: float = 1800) -> None:
        self._scan = scan
        self._slots = asyncio.Semaphore(concurrency)
        self._timeout = timeout
        self._jobs: dict[str, Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, request: ScanRequest) -> str:
        self._forget_old()
        if len(self._jobs) >= MAX_JOBS:
            raise ScanFailed(f"{MAX_JOBS} scan requests are pending or kept; try again later")
        identifier = str(uuid.uuid4())
        self._jobs[identifier] = Job(request)
        task = asyncio.create_task(self._run(identifier), name=f"harbor-scan-{identifier}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return identifier

    def get(self, identifier: str) -> Job | None:
        return self._jobs.get(identifier)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, identifier: str) -> None:
        job = self._jobs[identifier]
        try:
            async with self._slots, asyncio.timeout(self._timeout):
                job.findings = await self._scan(job.request)
        except TimeoutError:
            job.status, job.error = "failed", f"scan timed out after {self._timeout:.0f} s"
        except (ScanFailed, RegistryError, SandboxError, InvalidManifestError) as exc:
            job.status, job.error = "failed", str(exc)
        except Exception as exc:
            log.exception("harbor scan failed", extra={"digest": job.request.digest})
            job.status = "failed"
            job.error = f"internal error ({type(exc).__name__}); the adapter's log has details"
        else:
            job.status = "done"
        job.generated_at = datetime.now(UTC)
        job.finished = time.monotonic()
        log.info("harbor scan finished", extra={"digest": job.request.digest,
                                                "status": job.status})

    def _forget_old(self) -> None:
        limit = time.monotonic() - KEEP_SECONDS
        for identifier in [i for i, job in self._jobs.items()
                           if job.finished is not None and job.finished < limit]:
            del self._jobs[identifier]


def registry_tokens(
    registry_url: str, authorization: str, http: httpx.AsyncClient
) -> TokenProvider:
    """Tokens for Harbor's registry from the authorization Harbor gave (token spec flow)."""
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() == "bearer":
        async def given(_: str) -> str | None:
            return credential

        return given

    async def exchange(scope: str) -> str | None:
        probe = await http.get(f"{registry_url}/v2/")
        challenge = parse_bearer_challenge(probe.headers.get("WWW-Authenticate", ""))
        if challenge is None or "realm" not in challenge:
            return None
        params = {"scope": scope, **({"service": challenge["service"]}
                                     if "service" in challenge else {})}
        headers = {"Authorization": authorization} if authorization else {}
        answer = await http.get(challenge["realm"], params=params, headers=headers)
        if answer.status_code != 200:  # noqa: PLR2004
            raise ScanFailed(f"the registry's token service refused the credentials Harbor"
                             f" gave ({answer.status_code})")
        body = answer.json()
        token = body.get("token") or body.get("access_token")
        return token if isinstance(token, str) else None

    return exchange


async def scan_artifact(
    request: ScanRequest, matcher: Matcher, *, timeout: float = 30.0,
    limits: ScanLimits | None = None,
) -> list[Finding]:
    """Read the image from Harbor's registry, find its packages, match them.

    Harbor's report has no way to say "inventory only", so an empty database fails the scan.
    """
    async with httpx.AsyncClient(timeout=timeout) as http, RegistryClient(
        request.registry_url, timeout, token_provider=registry_tokens(
            request.registry_url, request.authorization, http),
    ) as registry:
        try:
            manifest = await registry.get_manifest(request.repository, request.digest)
        except ManifestNotFound:
            raise ScanFailed(f"{request.repository}@{request.digest} is not in the"
                             " registry") from None
        info = describe(manifest.media_type, manifest.body)
        if info.schema == SchemaKind.INDEX or info.kind != ArtifactKind.IMAGE:
            raise ScanFailed(f"{request.digest} is not a container image manifest")
        inventory = await read_inventory(registry, request.repository, info.layers,
                                         limits or ScanLimits())
    try:
        return await matcher.match(inventory)
    except NoVulnerabilityData as exc:
        raise ScanFailed(str(exc)) from None
