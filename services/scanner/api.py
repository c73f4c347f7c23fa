"""The scanner's HTTP surface: scan reports per tag or digest, rescans, SBOM export, and which
tags a vulnerability affects.

Visibility is the catalog's: a caller sees the scans of repositories in namespaces they may
pull from (services/auth/access.py); anything else answers 404 as if it did not exist. A scan
seen through one repository reads as that repository's (``scans.seen_from``): the same manifest
may sit in a private one. Rescans are for those who may push to the repository, and a manifest
queued less than ``[scanner] rescan_seconds`` ago (or still queued or scanning) answers 429.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from services.auth.access import may, read_scope, require_user
from services.core.errors import Forbidden
from services.core.http import (
    ApiError,
    decode_cursor,
    encode_cursor,
    json_response,
    page,
    query_limit,
)
from services.core.reference import is_valid_digest, is_valid_repository, is_valid_tag, namespace_of
from services.scanner.detectors import VERSIONS
from services.scanner.models import Finding, ScanRecord
from services.scanner.ports import ScanStore
from services.scanner.sbom import cyclonedx_json
from services.scanner.scans import is_stale, matched, rescan_wait, seen_from, summary
from services.scanner.vulndb.ports import VulnStore

__all__ = [
    "RESCAN_SECONDS",
    "SCAN_STORE",
    "VULN_STORE",
    "affected_tags",
    "finding_json",
    "routes",
    "scan_json",
    "tag_scans",
]

SCAN_STORE = web.AppKey("scanner.store", ScanStore)
# [scanner] rescan_seconds: how soon a rescan may queue the same manifest again.
RESCAN_SECONDS = web.AppKey("scanner.rescan_seconds", float)
# The vulnerability database (services/scanner/vulndb), opened by the scanner's context.
VULN_STORE = web.AppKey("scanner.vulndb", VulnStore)

# OSV ids (ossf/osv-schema: "<DB>-<ENTRYID>", e.g. GHSA-…, DSA-5532-1, PYSEC-2023-212) and CVE
# ids; one path segment, nothing that needs escaping.
_VULNERABILITY_ID = re.compile(r"[A-Za-z][A-Za-z0-9]*-[A-Za-z0-9._:-]{1,120}")

routes = web.RouteTableDef()


@routes.get("/api/v1/scans")
async def list_scans(request: web.Request) -> web.Response:
    """One item per platform manifest of ``repository:tag``."""
    repository, tag = await _visible_tag(request, request.query)
    items = [scan_json(record, platform) for record, platform in
             await _scans_of_tag(request, repository, tag, again=False)]
    return page(items, None)


@routes.post("/api/v1/scans")
async def rescan(request: web.Request) -> web.Response:
    """Queue the tag's manifests again (after a detector upgrade, or a failed scan)."""
    principal = await require_user(request)
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "malformed_json", 'send {"repository": NAME, "tag": TAG}') from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", 'send {"repository": NAME, "tag": TAG}')
    unknown = sorted(set(body) - {"repository", "tag"})
    if unknown:
        raise ApiError(400, "unknown_field", f"{unknown[0][:64]!r} is not a field here; the"
                       " fields are repository, tag")
    repository, tag = await _visible_tag(request, body)
    if not await may(request, principal, repository, "push"):
        raise Forbidden("forbidden", f"rescanning {repository} needs push access to it")
    await _check_rescan_rate(request, repository, tag)
    items = [scan_json(record, platform) for record, platform in
             await _scans_of_tag(request, repository, tag, again=True)]
    return json_response({"items": items, "next": None}, 202)


async def _check_rescan_rate(request: web.Request, repository: str, tag: str) -> None:
    store = request.app[SCAN_STORE]
    now, interval = time.time(), request.app[RESCAN_SECONDS]
    wait = 0.0
    for target, _ in await _targets(store, repository, tag):
        wait = max(wait, rescan_wait(await store.get(target), now, interval))
    if wait > 0:
        seconds = math.ceil(wait)
        raise ApiError(429, "rescan_too_soon",
                       f"{repository}:{tag} is being scanned or was queued less than"
                       f" {interval:.0f} s ago; try again in {seconds} s",
                       {"Retry-After": str(seconds)})


@routes.get("/api/v1/scans/{digest}")
async def get_scan(request: web.Request) -> web.Response:
    return json_response(scan_json(await _visible_scan(request), None))


@routes.get("/api/v1/scans/{digest}/sbom")
async def get_sbom(request: web.Request) -> web.Response:
    record = await _visible_scan(request)
    if record.status != "done":
        raise ApiError(409, "scan_not_done",
                       f"the scan of {record.digest} is {record.status}; an SBOM needs a done scan")
    if record.inventory is None:
        raise ApiError(409, "scan_not_done",
                       f"the scan of {record.digest} was made by a remote scanner (Clair or a"
                       " Harbor adapter), which lists no inventory; scan with the embedded"
                       " engine for an SBOM")
    body = cyclonedx_json(record.repository, record.digest, record.inventory)
    return web.Response(text=body, content_type="application/vnd.cyclonedx+json")


@routes.get("/api/v1/vulnerabilities/{id}/images")
async def vulnerability_images(request: web.Request) -> web.Response:
    """The tags whose image has a finding of this CVE or OSV id, by repository and tag."""
    identifier = request.match_info["id"]
    if not _VULNERABILITY_ID.fullmatch(identifier):
        raise ApiError(400, "invalid_vulnerability_id",
                       "give a CVE or OSV id, e.g. CVE-2024-1234 or GHSA-xxxx-xxxx-xxxx")
    limit = query_limit(request)
    cursor = request.query.get("cursor")
    after = tuple(decode_cursor(cursor, 3)) if cursor is not None else None
    items = [item for item in await affected_tags(request.app, identifier,
                                                  await _visible_namespaces(request))
             if after is None or _position(item) > after]
    more = len(items) > limit
    items = items[:limit]
    return page(items, encode_cursor(list(_position(items[-1]))) if more else None)


def _position(item: dict[str, Any]) -> tuple[str, str, str]:
    return item["repository"], item["tag"], item["manifest"]


async def affected_tags(
    app: web.Application, identifier: str, visible: frozenset[str] | None
) -> list[dict[str, Any]]:
    """The scanner's module API: each tag in a ``visible`` namespace (None: all) whose image,
    or one platform of it, has a finding of ``identifier`` or of an advisory known by it as an
    alias (``CVE-2024-1234`` → its DSA, DLA, GHSA …), with those findings."""
    store = app[SCAN_STORE]
    ids = sorted({identifier, *await app[VULN_STORE].advisory_ids(identifier)})
    findings: dict[str, list[dict[str, Any]]] = {}
    for digest, finding in await store.affected(ids):
        findings.setdefault(digest, []).append(finding_json(finding))
    platforms: dict[str, dict[str, str]] = {}
    items = []
    for repository, tag, tagged, manifest in await store.tags_of(sorted(findings)):
        if visible is not None and namespace_of(repository) not in visible:
            continue
        if tagged != manifest and tagged not in platforms:
            platforms[tagged] = dict(await store.platforms(tagged))
        items.append({
            "repository": repository,
            "tag": tag,
            "digest": tagged,
            "manifest": manifest,
            "platform": platforms[tagged].get(manifest) if tagged != manifest else None,
            "findings": findings[manifest],
        })
    return items


async def tag_scans(app: web.Application, digests: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The scanner's module API for the catalog: each tagged digest's scan at a glance.

    ``{"status", "summary"}`` per digest; for an index, over its platforms: ``done`` (with the
    counts added up) once every platform is done, else the least finished state (queued or
    scanning, then failed), ``unsupported`` only when no platform is scannable. Empty when
    this process runs no scanner.
    """
    store = app.get(SCAN_STORE)
    if store is None:
        return {}
    found: dict[str, dict[str, Any]] = {}
    for digest in dict.fromkeys(digests):
        targets = [target for target, _ in await store.platforms(digest)] or [digest]
        records = [record for target in targets if (record := await store.get(target))]
        if records:
            found[digest] = _overall(records)
    return found


def _overall(records: Sequence[ScanRecord]) -> dict[str, Any]:
    statuses = {record.status for record in records}
    for waiting in ("scanning", "queued", "failed"):
        if waiting in statuses:
            return {"status": waiting, "summary": None}
    done = [record for record in records if record.status == "done"]
    if not done:
        return {"status": "unsupported", "summary": None}
    if not all(matched(record) for record in done):  # inventory only: no counts to give
        return {"status": "done", "summary": None}
    return {"status": "done",
            "summary": summary([f for record in done for f in record.findings])}


def finding_json(finding: Finding) -> dict[str, Any]:
    package = finding.package
    return {
        "vulnerability_id": finding.vulnerability_id,
        "aliases": list(finding.aliases),
        "package": package.name,
        "kind": package.kind,
        "source_name": package.source_name,
        "installed_version": package.version,
        "fixed_version": finding.fixed_version,
        "fixed": finding.fixed_version is not None,
        "severity": finding.severity.label,
        "layer": package.layer,
        "summary": finding.summary,
    }


def scan_json(record: ScanRecord, platform: str | None) -> dict[str, Any]:
    inventory = record.inventory
    # Counts only for a matched scan: a failed or inventory-only one must not read as
    # "nothing found".
    done = matched(record)
    return {
        "digest": record.digest,
        "repository": record.repository,
        "platform": platform,
        "status": record.status,
        "reason": record.reason,
        "summary": summary(record.findings) if done else None,
        "findings": [finding_json(f) for f in record.findings] if done else None,
        "distribution": (f"{inventory.distribution.id} {inventory.distribution.version_id}"
                         if inventory and inventory.distribution else None),
        "packages": len(inventory.packages) if inventory else None,
        "warnings": list(inventory.warnings) if inventory else [],
    }


async def _visible_namespaces(request: web.Request) -> frozenset[str] | None:
    return (await read_scope(request)).readable


async def _visible_tag(request: web.Request, source: Any) -> tuple[str, str]:
    repository, tag = source.get("repository"), source.get("tag")
    if not isinstance(repository, str) or not is_valid_repository(repository):
        raise ApiError(400, "invalid_repository",
                       "give repository=NAME with a valid repository name, e.g. team/app")
    if not isinstance(tag, str) or not is_valid_tag(tag):
        raise ApiError(400, "invalid_tag", "give tag=TAG with a valid tag, e.g. latest")
    visible = await _visible_namespaces(request)
    if visible is not None and namespace_of(repository) not in visible:
        raise ApiError(404, "tag_not_found", f"no tag {tag!r} in a repository {repository!r}")
    return repository, tag


async def _visible_scan(request: web.Request) -> ScanRecord:
    digest = request.match_info["digest"]
    if not is_valid_digest(digest):
        raise ApiError(400, "invalid_digest", "give a manifest digest, sha256:<64 hex digits>")
    store = request.app[SCAN_STORE]
    record = await store.get(digest)
    shown = None if record is None else await _readable_repository(
        store, record, await _visible_namespaces(request))
    if record is None or shown is None:
        raise ApiError(404, "scan_not_found", f"no scan of {digest}")
    return seen_from(record, shown)


async def _readable_repository(
    store: ScanStore, record: ScanRecord, visible: frozenset[str] | None
) -> str | None:
    """A repository holding the scanned manifest that the caller may read: the one it was
    scanned from, else one whose tag names it (directly or through an index)."""
    if visible is None or namespace_of(record.repository) in visible:
        return record.repository
    return next((repository for repository, *_ in await store.tags_of([record.digest])
                 if namespace_of(repository) in visible), None)


async def _scans_of_tag(
    request: web.Request, repository: str, tag: str, *, again: bool
) -> list[tuple[ScanRecord, str | None]]:
    """The scan of each platform manifest the tag points at, as the registry's events said.

    A manifest without a scan record (its scan was lost), or whose inventory older detectors
    made, is queued on the way.
    """
    store = request.app[SCAN_STORE]
    found = []
    for target, platform in await _targets(store, repository, tag):
        stale = is_stale(await store.get(target), VERSIONS)
        await store.queue(target, repository, again=again or stale)
        record = await store.get(target)
        if record is not None:
            found.append((seen_from(record, repository), platform))
    return found


async def _targets(store: ScanStore, repository: str, tag: str) -> list[tuple[str, str | None]]:
    """The platform manifests (digest, ``os/arch``) the tag points at; the image's own digest
    (platform None) for a single-platform image."""
    digest = await store.tagged(repository, tag)
    if digest is None:
        raise ApiError(404, "tag_not_found", f"no tag {tag!r} in a repository {repository!r}")
    return list(await store.platforms(digest)) or [(digest, None)]
