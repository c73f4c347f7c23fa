"""Token issuance throughput: ``GET /v2/token`` as the docker CLI calls it, per credential kind.

What it measures
    ``dockyard serve`` runs as a child process on a data directory made by ``dockyard init``
    holding one user who owns (through a team) the namespace ``bench``, and an application
    token of that user. A load generator in this process keeps ``--concurrency`` keep-alive
    connections busy with ``GET /v2/token?service=…&scope=repository:bench/app:pull,push``
    (HTTP Basic credentials on every request, as docker sends them) until ``--requests``
    answers arrived; every one must be a 200 whose token grants pull and push. Two kinds:

    - ``app-token``: the application token as the password (one indexed read, no argon2);
    - ``password``: the user's password, after a first login that warmed the verified-
      credential cache (repeated docker logins skip argon2 for ``credential_cache_seconds``).

    Baseline, in the same run and with the same client: a bare aiohttp application in another
    child process whose one handler returns a constant JSON body shaped like a token response
    (same size), with aiohttp's defaults and no access log.

    The rate limits are raised for the run (``DOCKYARD_AUTH_RATE_PER_IP_PER_MINUTE`` and
    ``…_PER_USER_PER_MINUTE``: every request comes from one address and one account) and the
    periodic catalog sync is off (there is no registry).

Target
    app-token: ≥ 2,000 tokens/s, ≥ 50 % of the bare handler's requests/s, p99 ≤ 20 ms;
    password (after the first): ≥ 80 % of the app-token figure.

Reading the output
    One row per load: requests/s, client-side latency p50/p95/p99/max, the server process's
    CPU during the load (100 % = one core; an asyncio server uses one) and the load
    generator's own CPU. When the generator's CPU nears 100 % it, not the server, is the
    limit: the bare figure is then a floor of what aiohttp can serve, and the ratio to it is
    flattering. The summary gives the spread over runs and whether each target held.

    .venv/bin/python bench/token_issuance.py [--requests 20000] [--concurrency 32] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import jwt
from aiohttp import web
from harness import (
    DockyardServer,
    describe_machine,
    free_port,
    initialised,
    percentile,
    print_table,
    spread,
)

from services.auth.app import open_auth
from services.auth.policy import Principal
from services.core.config import Config
from services.core.eventlog.sqlite import SqliteEventLog
from services.ingest.app import open_catalog_reader

TARGET_TOKENS_PER_SECOND = 2_000
TARGET_RATIO_TO_BARE = 0.5
TARGET_P99_MS = 20.0
TARGET_PASSWORD_RATIO = 0.8
USER, PASSWORD, NAMESPACE = "bencher", "bench-password-123", "bench"
SCOPE = f"repository:{NAMESPACE}/app:pull,push"
# No limit is hit in a run: every request comes from one address and one account.
UNLIMITED = str(10**9)
ENV = {
    "DOCKYARD_AUTH_RATE_PER_IP_PER_MINUTE": UNLIMITED,
    "DOCKYARD_AUTH_RATE_PER_USER_PER_MINUTE": UNLIMITED,
    "DOCKYARD_SYNC_INTERVAL_SECONDS": "0",
}
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Load:
    kind: str
    run: int
    requests: int
    seconds: float
    latencies: list[float]
    server_cpu: float
    client_cpu: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def ms(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests per load")
    parser.add_argument("--concurrency", type=int, default=32, help="keep-alive connections")
    parser.add_argument("--runs", type=int, default=3, help="loads of each kind")
    parser.add_argument("--warmup", type=int, default=1_000, help="requests before timing")
    parser.add_argument("--dir", type=Path, default=None, help="where to make the temp dir")
    parser.add_argument("--serve-constant", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_constant:
        serve_constant(args.serve_constant)
        return

    loads: list[Load] = []
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-token-", dir=args.dir) as tmp:
        data_dir = Path(tmp) / "data"
        print(describe_machine(Path(tmp)))
        config = initialised(data_dir, "http://127.0.0.1:9",
                             **{k.removeprefix("DOCKYARD_").lower(): v for k, v in ENV.items()})
        app_token = asyncio.run(provision(config))
        with DockyardServer(config, env=ENV) as dockyard, constant_server() as bare:
            token_url = f"{dockyard.url}/v2/token"
            params = {"service": config.auth.service, "scope": SCOPE}
            check_token(token_url, params, (USER, app_token), config)
            targets = {
                "bare": Target(bare.url, {}, None, bare.pid),
                "app-token": Target(token_url, params, basic(USER, app_token), dockyard.pid),
                "password": Target(token_url, params, basic(USER, PASSWORD), dockyard.pid),
            }
            print(f"dockyard {dockyard.url} (pid {dockyard.pid}), bare aiohttp {bare.url}"
                  f" (pid {bare.pid}); {args.concurrency} connections,"
                  f" {args.requests:,} requests per load after {args.warmup:,} unmeasured\n")
            for run in range(1, args.runs + 1):
                for kind, target in targets.items():
                    load = asyncio.run(measure(kind, run, target, args))
                    loads.append(load)
                    report_load(load)
    print()
    report(loads, args)


# setting up ---------------------------------------------------------------------------------

async def provision(config: Config) -> str:
    """The user, their team, its namespace and an app token, as the CLI would make them."""
    event_log = SqliteEventLog(config.path(config.eventlog.path))
    await event_log.open()
    try:
        async with (open_catalog_reader(config) as catalog,
                    open_auth(config, event_log, catalog) as auth):
            admin = Principal("admin", "user", admin=True)
            await auth.identity.create_user(admin, USER, email="", password=PASSWORD)
            await auth.identity.create_team(admin, "benchers", owner=USER)
            await auth.identity.create_namespace(admin, NAMESPACE, team="benchers")
            _, secret = await auth.identity.create_token(admin, USER, "bench")
            return secret
    finally:
        await event_log.close()


def check_token(url: str, params: dict[str, str], auth: tuple[str, str], config: Config) -> None:
    """One token, checked: the load measures real issuance, not an error path."""
    response = httpx.get(url, params=params, auth=auth, timeout=10)
    response.raise_for_status()
    claims = jwt.decode(response.json()["token"], options={"verify_signature": False})
    expected = [{"type": "repository", "name": f"{NAMESPACE}/app", "actions": ["pull", "push"]}]
    if claims["sub"] != USER or claims["access"] != expected or claims["aud"] != \
            config.auth.service:
        raise RuntimeError(f"unexpected token claims: {claims}")


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


# the bare baseline --------------------------------------------------------------------------

# A token response's shape and size: an ES256 JWT with an x5c header is about 1.1 kB.
CONSTANT_BODY = json.dumps({
    "token": "x" * 1100, "access_token": "x" * 1100, "expires_in": 300,
    "issued_at": "2026-01-01T00:00:00Z",
}).encode()


def serve_constant(port: int) -> None:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(body=CONSTANT_BODY, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v2/token", handler)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


@dataclass
class ConstantServer:
    url: str
    pid: int


@contextlib.contextmanager
def constant_server() -> Iterator[ConstantServer]:
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve-constant", str(port)],
                               stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v2/token"
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(httpx.TransportError):
                httpx.get(url, timeout=0.5).raise_for_status()
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the bare aiohttp server did not start")
            time.sleep(0.05)
        yield ConstantServer(url, process.pid)
    finally:
        process.terminate()
        process.wait(10)


# the load -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    url: str
    params: dict[str, str]
    authorization: str | None  # the same Basic credentials on every request, as docker sends
    pid: int  # the server process, for its CPU time


async def measure(kind: str, run: int, target: Target, args: argparse.Namespace) -> Load:
    headers = {"Authorization": target.authorization} if target.authorization else {}
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        await fire(session, target, args.warmup, args.concurrency)
        cpu_before, client_before = cpu_seconds(target.pid), time.process_time()
        started = time.perf_counter()
        latencies = await fire(session, target, args.requests, args.concurrency)
        seconds = time.perf_counter() - started
        server_cpu = (cpu_seconds(target.pid) - cpu_before) / seconds
        client_cpu = (time.process_time() - client_before) / seconds
    return Load(kind, run, args.requests, seconds, latencies, server_cpu, client_cpu)


async def fire(
    session: aiohttp.ClientSession, target: Target, count: int, concurrency: int
) -> list[float]:
    """``count`` GETs over ``concurrency`` connections; each one's latency in seconds."""
    latencies: list[float] = []
    remaining = iter(range(count))

    async def worker() -> None:
        for _ in remaining:  # shared: each request is sent once
            started = time.perf_counter()
            async with session.get(target.url, params=target.params) as response:
                body = await response.read()
                if response.status != 200:
                    raise RuntimeError(
                        f"{target.url} answered {response.status}: {body[:300]!r}")
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from proc(5) stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


# the report ---------------------------------------------------------------------------------

HEADERS = ("kind", "run", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms",
           "server CPU", "client CPU")


def row_of(load: Load) -> tuple[object, ...]:
    return (load.kind, load.run, f"{load.requests:,}", f"{load.rate:,.0f}", f"{load.ms(50):.1f}",
            f"{load.ms(95):.1f}", f"{load.ms(99):.1f}", f"{max(load.latencies) * 1000:.1f}",
            f"{load.server_cpu:.0%}", f"{load.client_cpu:.0%}")


def report_load(load: Load) -> None:
    print("  ".join(f"{h}={c}" for h, c in zip(HEADERS, row_of(load), strict=True)))


def report(loads: list[Load], args: argparse.Namespace) -> None:
    print_table(HEADERS, [row_of(load) for load in loads])
    by_run = {(load.kind, load.run): load for load in loads}
    runs = range(1, args.runs + 1)
    app = [by_run["app-token", r] for r in runs]
    password = [by_run["password", r] for r in runs]
    bare = [by_run["bare", r] for r in runs]
    to_bare = [a.rate / b.rate for a, b in zip(app, bare, strict=True)]
    to_app = [p.rate / a.rate for p, a in zip(password, app, strict=True)]
    verdict = {True: "met", False: "MISSED"}.__getitem__

    print(f"\n{args.concurrency} connections, one repository scope; bare aiohttp"
          f" {spread([b.rate for b in bare])} req/s")
    print(f"app-token: {spread([a.rate for a in app])} tokens/s"
          f" ({verdict(min(a.rate for a in app) >= TARGET_TOKENS_PER_SECOND)}"
          f" ≥ {TARGET_TOKENS_PER_SECOND:,}), {min(to_bare):.0%} to {max(to_bare):.0%} of bare"
          f" ({verdict(min(to_bare) >= TARGET_RATIO_TO_BARE)} ≥ {TARGET_RATIO_TO_BARE:.0%}),"
          f" p99 {min(a.ms(99) for a in app):.1f} to {max(a.ms(99) for a in app):.1f} ms"
          f" ({verdict(max(a.ms(99) for a in app) <= TARGET_P99_MS)} ≤ {TARGET_P99_MS:.0f} ms)")
    print(f"password (cached): {spread([p.rate for p in password])} tokens/s,"
          f" {min(to_app):.0%} to {max(to_app):.0%} of app-token"
          f" ({verdict(min(to_app) >= TARGET_PASSWORD_RATIO)} ≥ {TARGET_PASSWORD_RATIO:.0%}),"
          f" p99 {max(p.ms(99) for p in password):.1f} ms at most")


if __name__ == "__main__":
    main()
