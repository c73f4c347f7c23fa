"""Dockyard's Harbor scanner adapter API, under ``/api/harbor/api/v1`` (thin routes).

Harbor calls ``<registered URL>/api/v1/metadata``, ``…/scan`` and ``…/scan/{id}/report``
(scanner-adapter-openapi-v1.1.yaml). Mounted at ``/api/harbor`` so the adapter's
``/api/v1/scan`` never sits beside Dockyard's own ``/api/v1/scans`` (and, under ``/api/``,
the portal leaves it alone): register the scanner in Harbor as
``http(s)://<dockyard>/api/harbor`` with authorization "Bearer" and ``[harbor] api_token``.
Without a token configured the routes answer 404: the adapter is not offered. Errors are the
spec's ErrorResponse ``{"error": {"message"}}``.
"""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime

from aiohttp import web

from services.scanner.api import VULN_STORE
from services.scanner.harbor.service import AdapterJobs, ScanFailed
from services.scanner.harbor.wire import (
    ERROR,
    METADATA,
    REPORT_HARBOR,
    REPORT_V11,
    SCAN_RESPONSE,
    WireError,
    metadata,
    parse_scan_request,
    report,
)

__all__ = ["HARBOR_JOBS", "HARBOR_TOKEN", "PREFIX", "REFRESH_AFTER", "routes"]

PREFIX = "/api/harbor/api/v1"
REFRESH_AFTER = 2  # seconds Harbor waits before asking for a pending report again

HARBOR_JOBS = web.AppKey("harbor_jobs", AdapterJobs)
HARBOR_TOKEN = web.AppKey("harbor_token", str)

routes = web.RouteTableDef()


def _error(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=json.dumps({"error": {"message": message}}),
                        headers={"Content-Type": ERROR})


def _document(status: int, data: object, media_type: str) -> web.Response:
    return web.Response(status=status, body=json.dumps(data, separators=(",", ":")),
                        headers={"Content-Type": media_type})


def _refused(request: web.Request) -> web.Response | None:
    """None when the caller is the Harbor that was given the token (compared in constant time)."""
    expected = request.app[HARBOR_TOKEN]
    if not expected:
        return _error(404, "the Harbor scanner adapter API is not enabled ([harbor] api_token)")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), expected.encode()):
        return _error(401, "expected Authorization: Bearer <the adapter's token>")
    return None


@routes.get(f"{PREFIX}/metadata")
async def get_metadata(request: web.Request) -> web.Response:
    if (refused := _refused(request)) is not None:
        return refused
    status = await request.app[VULN_STORE].status()
    newest = max((s.newest_modified for s in status if s.newest_modified), default=None)
    return _document(200, metadata(newest), METADATA)


@routes.post(f"{PREFIX}/scan")
async def accept_scan(request: web.Request) -> web.Response:
    if (refused := _refused(request)) is not None:
        return refused
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        return _error(400, "the body is not JSON")
    try:
        scan = parse_scan_request(body)
        identifier = request.app[HARBOR_JOBS].submit(scan)
    except WireError as exc:
        return _error(exc.status, str(exc))
    except ScanFailed as exc:
        return _error(503, str(exc))
    return _document(202, {"id": identifier}, SCAN_RESPONSE)


@routes.get(f"{PREFIX}/scan/{{identifier}}/report")
async def get_report(request: web.Request) -> web.Response:
    if (refused := _refused(request)) is not None:
        return refused
    accept = request.headers.get("Accept", "")
    if REPORT_HARBOR.partition(";")[0] in accept:
        media_type = REPORT_HARBOR
    elif not accept or "*/*" in accept or REPORT_V11.partition(";")[0] in accept:
        media_type = REPORT_V11
    else:
        return _error(400, f"report types offered: {REPORT_V11}, {REPORT_HARBOR}")
    job = request.app[HARBOR_JOBS].get(request.match_info["identifier"])
    if job is None:
        return _error(404, "no scan request with that id (finished ones are kept an hour)")
    if job.status == "pending":
        return web.Response(status=302, headers={"Refresh-After": str(REFRESH_AFTER)})
    if job.status == "failed":
        return _error(500, job.error)
    return _document(200, report(job.request, job.findings,
                                 job.generated_at or datetime.now(UTC)), media_type)
