"""The scan of one manifest, as a state machine, and the workers that run scans.

States (``models.ScanStatus``)::

    queued ──▶ scanning ──▶ done            (inventory, findings; reason notes "inventory only")
      ▲            │  └──▶ failed(reason)   (registry, layer or matcher trouble, over a budget
      │            │                         of services/scanner/limits.py, timeout)
      │            └────▶ unsupported(reason)  (Helm chart, signature, SBOM, attestation …)
      └── rescan (POST /api/v1/scans) from done, failed or unsupported; ``scanning`` left by a
          stopped process goes back to ``queued`` at start.

A failure is never stored as an empty report: only ``done`` carries findings, and the API shows
the reason of every other state. The store is the queue: the consumer only records ``queued``,
and workers claim the oldest queued scan, so scans survive restarts and never block the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, replace
from typing import Any

from services.core.registry import ManifestNotFound, RegistryClient, RegistryError
from services.ingest.manifests import (
    ArtifactKind,
    InvalidManifestError,
    ManifestInfo,
    SchemaKind,
    describe,
)
from services.scanner.limits import ScanLimits
from services.scanner.matcher import NoVulnerabilityData
from services.scanner.models import (
    Finding,
    ImageRef,
    LayerRef,
    Package,
    ScanRecord,
    ScanStatus,
    Severity,
)
from services.scanner.ports import Matcher, RemoteScanner, ScanStore
from services.scanner.sandbox import SandboxError, read_inventory

__all__ = [
    "TRANSITIONS",
    "InvalidTransition",
    "ScanWorkers",
    "check_transition",
    "findings_from_json",
    "findings_to_json",
    "is_stale",
    "matched",
    "public_reason",
    "rescan_wait",
    "seen_from",
    "summary",
]

log = logging.getLogger("dockyard.scanner")

TRANSITIONS: dict[ScanStatus | None, frozenset[ScanStatus]] = {
    None: frozenset({"queued"}),
    "queued": frozenset({"scanning"}),
    "scanning": frozenset({"done", "failed", "unsupported", "queued"}),
    "done": frozenset({"queued"}),
    "failed": frozenset({"queued"}),
    "unsupported": frozenset({"queued"}),
}
# The reason of a done scan that was not matched; the next database change matches it
# (matcher.Rematcher, ScanStore.unmatched), so this exact text marks it in the store.
INVENTORY_ONLY = ("inventory only: no vulnerability data is loaded"
                  " (dockyard vulndb import PATH)")

Publish = Callable[[ScanRecord], Awaitable[None]]


class InvalidTransition(ValueError):
    pass


def check_transition(current: ScanStatus | None, new: ScanStatus) -> None:
    if new not in TRANSITIONS[current]:
        raise InvalidTransition(f"a scan cannot go from {current or 'nothing'} to {new}")


def is_stale(record: ScanRecord | None, versions: dict[str, str]) -> bool:
    """Whether a record's inventory was made by other detector versions than ``versions``."""
    return (record is not None and record.inventory is not None
            and record.inventory.detectors != versions)


def matched(record: ScanRecord) -> bool:
    """Whether the record's findings are a match result: a done scan made while the database
    was empty (``INVENTORY_ONLY``) has none, which must not read as "no vulnerabilities"."""
    return record.status == "done" and record.reason != INVENTORY_ONLY


def seen_from(record: ScanRecord, repository: str) -> ScanRecord:
    """The record as a reader of ``repository`` sees it.

    One manifest may be in several repositories and has one scan, which names the repository
    its layers were read from; a reader of another repository holding the same manifest must
    not learn that name (it may be private), so it reads as theirs, reason included.
    """
    if record.repository == repository:
        return record
    reason = record.reason and record.reason.replace(record.repository, repository)
    return replace(record, repository=repository, reason=reason)


# The scheme and authority of a URL in a failure reason: the registry's, Clair's or an
# adapter's address inside the deployment, no business of whoever may read the scan (the log
# keeps it); the path stays, it names the repository and blob.
_ADDRESS = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s'\"<>()]+")


def public_reason(reason: str) -> str:
    """A failure reason fit for every reader of the scan: addresses replaced."""
    return _ADDRESS.sub("<internal address>", reason)


def rescan_wait(record: ScanRecord | None, now: float, interval: float) -> float:
    """Seconds until a rescan may queue ``record`` again (0: now). A queued or running scan is
    never queued twice, and one queued less than ``interval`` seconds ago waits out the rest:
    a rescan downloads every layer again."""
    if record is None:
        return 0.0
    wait = max(0.0, record.queued_at + interval - now)
    return max(wait, 1.0) if record.status in {"queued", "scanning"} else wait


def summary(findings: Sequence[Finding]) -> dict[str, int]:
    """Findings counted by severity label, every label present (zeros included)."""
    counts = {severity.label: 0 for severity in Severity}
    for finding in findings:
        counts[finding.severity.label] += 1
    return counts


def findings_to_json(findings: Sequence[Finding]) -> list[dict[str, Any]]:
    return [
        {
            "vulnerability_id": f.vulnerability_id,
            "aliases": list(f.aliases),
            "package": asdict(f.package),
            "fixed_version": f.fixed_version,
            "severity": f.severity.name,
            "summary": f.summary,
        }
        for f in findings
    ]


def findings_from_json(data: list[dict[str, Any]]) -> tuple[Finding, ...]:
    return tuple(
        Finding(
            vulnerability_id=f["vulnerability_id"],
            aliases=tuple(f["aliases"]),
            package=Package(**f["package"]),
            fixed_version=f["fixed_version"],
            severity=Severity[f["severity"]],
            summary=f.get("summary", ""),
        )
        for f in data
    )


class ScanWorkers:
    """Claims queued scans from the store and runs them, ``concurrency`` at a time."""

    def __init__(
        self,
        store: ScanStore,
        registry: RegistryClient,
        *,
        matcher: Matcher | None,
        remote: RemoteScanner | None = None,
        publish: Publish | None = None,
        limits: ScanLimits | None = None,
        concurrency: int = 2,
        timeout: float = 1800,
    ) -> None:
        self._store = store
        self._registry = registry
        self._matcher = matcher
        self._remote = remote
        self._publish = publish
        self._limits = limits or ScanLimits()
        self._concurrency = concurrency
        self._timeout = timeout
        self._resumed = False

    async def drain(self) -> None:
        """Run queued scans, ``concurrency`` at a time, until none is left (the periodic job)."""
        if not self._resumed:
            # Only a process running the scanner's background part gets here, once.
            await self._store.requeue_interrupted()
            self._resumed = True

        async def worker() -> None:
            while await self.run_once():
                pass

        await asyncio.gather(*(worker() for _ in range(self._concurrency)))

    async def run_once(self) -> bool:
        """Run the oldest queued scan, if any; False when nothing was queued."""
        record = await self._store.claim()
        if record is None:
            return False
        try:
            finished = await self._outcome(record)
        except InvalidTransition as exc:
            # Another process put the scan back in the queue (its start requeues what it
            # thinks was interrupted) and another worker finished it: that outcome stands.
            log.warning("scan outcome dropped", extra={"digest": record.digest,
                                                       "error": str(exc)})
            return True
        if finished is not None:
            log.info("scan finished", extra={"digest": finished.digest,
                                             "status": finished.status})
            if self._publish is not None:
                await self._publish(finished)
        return True

    async def _outcome(self, record: ScanRecord) -> ScanRecord | None:
        try:
            async with asyncio.timeout(self._timeout):
                return await self._scan(record)
        except TimeoutError:
            return await self._fail(record, f"scan timed out after {self._timeout:.0f} s")
        except (RegistryError, SandboxError, InvalidManifestError) as exc:
            return await self._fail(record, str(exc))
        except InvalidTransition:
            raise
        except Exception as exc:
            log.exception("scan failed", extra={"digest": record.digest})
            return await self._fail(
                record, f"internal error ({type(exc).__name__}); the server log has details")

    async def _fail(self, record: ScanRecord, reason: str) -> ScanRecord:
        public = public_reason(reason)
        if public != reason:
            log.warning("scan failed: %s", reason, extra={"digest": record.digest})
        return await self._store.finish(record.digest, "failed", reason=public)

    async def _scan(self, record: ScanRecord) -> ScanRecord | None:
        repository, digest = record.repository, record.digest
        try:
            manifest = await self._registry.get_manifest(repository, digest)
        except ManifestNotFound:
            return await self._store.finish(
                digest, "failed", reason=f"manifest {digest} is no longer in {repository}")
        info = describe(manifest.media_type, manifest.body)
        if info.schema == SchemaKind.INDEX:
            # Each platform is scanned as its own manifest; the index itself has no layers.
            await self._store.set_platforms(digest, [
                (p.digest, "/".join(x for x in (p.os, p.architecture, p.variant) if x))
                for p in info.platforms
            ])
            for platform in info.platforms:
                await self._store.queue(platform.digest, repository)
            await self._store.forget(digest)
            return None
        if info.kind != ArtifactKind.IMAGE:
            reason = info.note or (f"{info.kind.value.replace('_', ' ')} artifact"
                                   f" ({info.artifact_type}), not a container image")
            return await self._store.finish(digest, "unsupported", reason=reason)
        if self._remote is not None:
            return await self._remote_scan(record, info)
        inventory = await read_inventory(self._registry, repository, info.layers,
                                         self._limits)
        findings = None
        if self._matcher is not None:
            with contextlib.suppress(NoVulnerabilityData):
                findings = await self._matcher.match(inventory)
        if findings is None:
            # Never "no vulnerabilities" for want of data: said so, matched once data comes.
            return await self._store.finish(digest, "done", reason=INVENTORY_ONLY,
                                            inventory=inventory)
        return await self._store.finish(digest, "done", inventory=inventory, findings=findings)

    async def _remote_scan(self, record: ScanRecord, info: ManifestInfo) -> ScanRecord:
        """Clair or a Harbor adapter reads the layers itself; its report is the outcome."""
        image = ImageRef(
            repository=record.repository,
            digest=record.digest,
            layers=tuple(LayerRef(layer.digest, layer.media_type) for layer in info.layers),
            media_type=info.media_type,
        )
        remote = self._remote
        if remote is None:  # pragma: no cover - the caller checked
            raise RuntimeError("no remote scanner")
        try:
            findings = await remote.scan(image)
        except Exception as exc:  # noqa: BLE001 - the backend's own words become the reason
            return await self._fail(record, f"{type(remote).__name__}: {exc}")
        return await self._store.finish(record.digest, "done", findings=findings)
