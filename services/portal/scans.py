"""Scan reports on the portal: summaries, findings filtered by severity and fix, SBOM download.

Read through the scanner's store port (``SCAN_STORE``); without the scanner in the process the
pages say scanning is not enabled. Nothing here queues or changes a scan.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence

from aiohttp import web

from services.core.errors import Invalid, NotFound
from services.core.reference import is_valid_digest, is_valid_repository
from services.portal.access import looker, require_readable
from services.scanner.api import SCAN_STORE
from services.scanner.models import Finding, ScanRecord, Severity
from services.scanner.sbom import cyclonedx_json
from services.scanner.scans import matched, summary

__all__ = [
    "SEVERITIES",
    "FindingFilter",
    "filter_findings",
    "finding_filter",
    "routes",
    "scan_records",
    "summary_text",
]

routes = web.RouteTableDef()

# Worst first, as the filter lists them.
SEVERITIES = tuple(severity.label for severity in sorted(Severity, reverse=True))
FindingFilter = tuple[str | None, bool]  # (severity label or None for any, fixable only)


def finding_filter(query: Mapping[str, str]) -> FindingFilter:
    """``?severity=High&fixable=1`` from the tag page's filter form."""
    severity = query.get("severity") or None
    if severity is not None and severity not in SEVERITIES:
        raise Invalid("invalid_severity",
                      f"severity must be one of {', '.join(SEVERITIES)}, not {severity[:20]!r}.")
    return severity, query.get("fixable") in {"1", "on", "true"}


def filter_findings(findings: Iterable[Finding], chosen: FindingFilter) -> list[Finding]:
    """The findings of the chosen severity (any when None) and, if asked, with a fix; worst
    first, then by id."""
    severity, fixable = chosen
    kept = [f for f in findings
            if (severity is None or f.severity.label == severity)
            and (not fixable or f.fixed_version is not None)]
    return sorted(kept, key=lambda f: (-f.severity, f.vulnerability_id, f.package.name))


def summary_text(record: ScanRecord | None) -> str:
    """One line for a tag row: the scan's state, or its findings by severity."""
    if record is None:
        return "not scanned"
    if record.status != "done":
        return record.status
    if not matched(record):
        return "not matched: no vulnerability data"
    counts = summary(record.findings)
    found = [f"{counts[label]} {label}" for label in SEVERITIES if counts[label]]
    return ", ".join(found) if found else "no known vulnerabilities"


async def scan_records(
    request: web.Request, digests: Sequence[str]
) -> dict[str, ScanRecord | None] | None:
    """The scan of each digest; None when the scanner is not part of this Dockyard."""
    store = request.app.get(SCAN_STORE)
    if store is None:
        return None
    records = await asyncio.gather(*(store.get(digest) for digest in digests))
    return dict(zip(digests, records, strict=True))


@routes.get(r"/r/{repository:[a-z0-9][a-z0-9._/-]*}/-/sbom/{digest}")
async def sbom(request: web.Request) -> web.Response:
    """The CycloneDX SBOM of a scanned manifest, as a download."""
    who = await looker(request)
    repository, digest = request.match_info["repository"], request.match_info["digest"]
    if not is_valid_repository(repository) or not is_valid_digest(digest):
        raise NotFound("scan_not_found", "There is no such scan.")
    require_readable(who, repository)
    records = await scan_records(request, [digest])
    record = None if records is None else records[digest]
    if record is None:
        raise NotFound("scan_not_found", f"There is no scan of {digest} in {repository}.")
    # The scan is filed under the repository the manifest was first pushed to: that one must
    # be readable too, or a known digest would open another namespace's inventory.
    require_readable(who, record.repository)
    if record.status != "done" or record.inventory is None:
        raise Invalid("scan_not_done", f"The scan of {digest} is {record.status}; an SBOM"
                      " needs a finished scan.")
    filename = f"{repository.replace('/', '_')}-{digest.partition(':')[2][:12]}.cdx.json"
    return web.Response(
        text=cyclonedx_json(repository, record.digest, record.inventory),
        content_type="application/vnd.cyclonedx+json",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
