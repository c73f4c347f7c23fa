"""Plugs Dockyard's Harbor scanner adapter API into the application (routes and jobs).

``services.scanner.app.setup`` calls ``setup`` after installing its own context, whose
vulnerability database (``VULN_STORE``) the adapter matches with.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from services.core.web import CONFIG
from services.scanner.api import VULN_STORE
from services.scanner.harbor.api import HARBOR_JOBS, HARBOR_TOKEN, routes
from services.scanner.harbor.service import AdapterJobs, scan_artifact
from services.scanner.harbor.wire import ScanRequest
from services.scanner.limits import ScanLimits
from services.scanner.matcher import OsvMatcher
from services.scanner.models import Finding

__all__ = ["setup"]


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)
    app.cleanup_ctx.append(_adapter_ctx)


async def _adapter_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    app[HARBOR_TOKEN] = config.harbor.api_token.get_secret_value()
    matcher = OsvMatcher(app[VULN_STORE])
    limits = ScanLimits.from_config(config.scanner)

    async def scan(request: ScanRequest) -> list[Finding]:
        return await scan_artifact(request, matcher, timeout=config.registry.timeout_seconds,
                                   limits=limits)

    jobs = AdapterJobs(scan, concurrency=config.scanner.concurrency,
                       timeout=config.scanner.timeout_seconds)
    app[HARBOR_JOBS] = jobs
    yield
    await jobs.close()
