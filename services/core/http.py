"""HTTP conventions shared by every service's API.

Errors are ``{"error": {"code": "...", "message": "..."}}`` with a 4xx/5xx status; handlers
raise ``ApiError`` and ``error_middleware`` renders it (and any unexpected exception as a 500
without internals). Lists are ``{"items": [...], "next": cursor}`` with opaque cursors. CSV
exports go through ``csv_response``, whose cells a spreadsheet will not run as formulas.
``client_address`` is the client behind trusted proxies (``X-Forwarded-For``).
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import ipaddress
import json
import logging
import re
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Sequence
from typing import Any

from aiohttp import web

from services.core.errors import DyError

__all__ = [
    "ApiError",
    "client_address",
    "csv_cell",
    "csv_response",
    "decode_cursor",
    "encode_cursor",
    "error_middleware",
    "error_response",
    "json_response",
    "page",
    "query_limit",
]

log = logging.getLogger("dockyard.http")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
_LIMIT = re.compile(r"0*([1-9][0-9]{0,2})")  # 1 to 999 in ASCII digits; MAX_LIMIT checked after


class ApiError(DyError):
    """An error with an explicit HTTP status, raised by request handlers."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(code, message, headers)
        self.status = status


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    response = json_response({"error": {"code": code, "message": message}}, status)
    response.headers.update(headers or {})
    return response


def page(items: list[dict[str, Any]], next_cursor: str | None) -> web.Response:
    return json_response({"items": items, "next": next_cursor})


def encode_cursor(position: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    """The position a cursor stands for; a 400 for anything this API did not hand out."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):  # "[[[[…"
        position = None
    if not isinstance(position, list) or len(position) != arity:
        raise ApiError(
            400, "invalid_cursor", "cursor is not one this API returned; drop it to start over"
        )
    return position


def query_limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    # Not str.isdigit(): it accepts "²", which int() refuses, and int() refuses 4300+ digits.
    match = _LIMIT.fullmatch(raw)
    if match is None or int(match[1]) > MAX_LIMIT:
        raise ApiError(400, "invalid_limit", f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(match[1])


# What makes a spreadsheet read a cell as a formula (OWASP "CSV Injection"): these first
# characters, also after leading spaces, which spreadsheets skip.
_FORMULA_STARTS = frozenset("=+-@\t\r")


def csv_cell(value: object) -> str:
    """``value`` as CSV text a spreadsheet shows as text: a cell that could start a formula is
    prefixed with ``'`` (OWASP's advice)."""
    text = "" if value is None else str(value)
    return "'" + text if text.lstrip(" ")[:1] in _FORMULA_STARTS else text


async def csv_response(
    request: web.Request, filename: str, columns: Sequence[str],
    pages: AsyncIterable[Iterable[Sequence[object]]],
) -> web.StreamResponse:
    """A CSV download of ``columns`` then every row of ``pages``, streamed a page at a time."""
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{filename}"',
    })
    await response.prepare(request)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([csv_cell(column) for column in columns])
    async for rows in pages:
        writer.writerows([csv_cell(value) for value in row] for row in rows)
        await response.write(buffer.getvalue().encode())
        buffer.seek(0)
        buffer.truncate()
    await response.write(buffer.getvalue().encode())
    await response.write_eof()
    return response


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DyError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:  # noqa: PLR2004 - redirects and the like pass through
            raise
        code = exc.reason.lower().replace(" ", "_")
        kept = {name: value for name, value in exc.headers.items()
                if name.lower() not in {"content-type", "content-length"}}
        return error_response(exc.status, code, exc.reason, kept)
    except Exception:
        log.exception("unhandled error", extra={"path": request.path, "method": request.method})
        return error_response(500, "internal_error", "internal error; the server log has details")


def client_address(peer: str, forwarded_for: list[str],
                   trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> str:
    """The client's address: ``peer`` itself, unless it is a trusted proxy; then the last hop
    of ``X-Forwarded-For`` (each header value a comma-separated list, appended to left to
    right) that is not a trusted proxy, as nginx's ``real_ip_recursive`` takes it. A hop that is
    not an address (forged, or ``unknown``) ends the walk: nothing left of it is believed."""
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    address = peer
    while _trusted(address, trusted) and hops:
        candidate = hops.pop()
        if not _is_address(candidate):
            break
        address = candidate
    return address


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _trusted(address: str,
             trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    if not trusted:
        return False
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in trusted)
