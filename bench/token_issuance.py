"""Token issuance: ``GET /v2/token`` as the docker CLI calls it, per credential kind, under wrk.

What it measures
    ``dockyard serve`` runs as a child process on a data directory made by ``dockyard init``
    holding one user who is a member of the team that owns the namespace ``bench``, and an
    application token of that user. wrk (``bench/wrk_get.lua``) keeps ``--connections``
    keep-alive connections busy for ``--seconds`` with
    ``GET /v2/token?service=…&scope=repository:bench/app:pull`` and the same HTTP Basic
    credentials on every request, as docker sends them. Every response must be a 200; one
    token is decoded first to check it grants pull. Two kinds:

    - ``app-token``: the application token as the password (an indexed read, no argon2);
    - ``password``: the user's password, after a warm-up that filled the verified-credential
      cache (repeated docker logins skip argon2 for ``credential_cache_seconds``);
    - ``distinct``: the application token again, but each request asks for another repository
      of ``bench`` (``bench/app0`` … ``bench/app9999`` in turn): no two requests of a second
      are the same, so every token is signed anew. The first two loads repeat one request,
      docker's pattern, and a token asked for again within its second is handed out again
      (services/auth/tokens.py RecentTokens); this one shows what a token costs without that.

    Baseline, in the same run and with the same load generator: ``bare``, a bare aiohttp
    application in another child process run as ``dockyard serve`` runs (uvloop, handler
    cancellation, no access log line), whose one handler returns a constant JSON body of a
    token response's size.

    The load generator is wrk, not Python: an aiohttp client on this 2-core machine saturated
    before the bare server did, which made the ratio to bare look twice what it is.

    Each round measures the three kinds in turn (interleaved, so a machine-wide slowdown hits
    them alike), after a one-second unmeasured warm-up of each. The rate limits are raised for
    the run (every request comes from one address and one account) and the periodic catalog
    sync is off (there is no registry).

Target
    app-token and password: ≥ 50 % of the bare handler's requests/s, p99 ≤ 20 ms (distinct is
    shown, not judged).

Reading the output
    One row per load: requests/s, latency p50/p99/max as wrk saw it, the server's CPU during the
    load (100 % = one core; an asyncio server uses one) and its CPU time per request, in µs, the
    steadier figure on a shared machine: the ratio to bare is given both ways. When the server's
    CPU is well under 100 %, something else (the machine, wrk) was the limit.

    .venv/bin/python bench/token_issuance.py [--seconds 5] [--connections 32]

    Figures of issue 15 (32 connections, 5 s loads, 3 rounds, twice, interleaved with the code
    before; 2 shared cores, load average 1-2): bare 29-36 µs of server CPU per request.
    Before: app-token 167-178 µs, password 168-174 µs, distinct 175-211 µs. After (signing
    with cryptography, grants cached, issued_at once a second, tokens handed out again within
    their second): app-token 62-68 µs (44-53 % of bare by CPU, 43-68 % by req/s), password
    67-77 µs, distinct 164-178 µs; p99 4-8 ms for app-token and password.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import uvloop
from aiohttp import web
from harness import DockyardServer, describe_machine, free_port, initialised, print_table

from services.auth.app import open_auth
from services.auth.policy import Principal
from services.core.config import Config
from services.core.eventlog.sqlite import SqliteEventLog
from services.ingest.app import open_catalog_reader

TARGET_RATIO_TO_BARE = 0.5
TARGET_P99_MS = 20.0
ROUNDS = 3
WARMUP_SECONDS = 1
WRK_SCRIPT = Path(__file__).with_name("wrk_get.lua")
USER, PASSWORD, NAMESPACE = "bencher", "bench-password-123", "bench"
SCOPE = f"repository:{NAMESPACE}/app:pull"
DISTINCT = 10_000  # repositories the distinct load asks for in turn
# No limit is hit in a run: every request comes from one address and one account.
UNLIMITED = str(10**9)
ENV = {
    "DOCKYARD_AUTH_RATE_PER_IP_PER_MINUTE": UNLIMITED,
    "DOCKYARD_AUTH_RATE_PER_USER_PER_MINUTE": UNLIMITED,
    "DOCKYARD_SYNC_INTERVAL_SECONDS": "0",
}
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Target:
    kind: str
    url: str
    authorization: str  # "" for none
    pid: int  # the server process, for its CPU time
    wrk_args: tuple[str, ...] = ()  # bench/wrk_get.lua's: what varies between requests


@dataclass
class Load:
    kind: str
    round: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us(self) -> float:
        """Server CPU time per request, µs."""
        return self.server_cpu_seconds / self.requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="measured load per kind")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections")
    parser.add_argument("--serve-constant", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_constant:
        serve_constant(args.serve_constant)
        return
    if shutil.which("wrk") is None:
        sys.exit("bench/token_issuance.py drives the load with wrk: apt-get install wrk"
                 " (make bench does)")

    loads: list[Load] = []
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-token-") as tmp:
        data_dir = Path(tmp) / "data"
        print(describe_machine(Path(tmp)))
        config = initialised(data_dir, "http://127.0.0.1:9",
                             **{k.removeprefix("DOCKYARD_").lower(): v for k, v in ENV.items()})
        app_token = asyncio.run(provision(config))
        with DockyardServer(config, env=ENV) as dockyard, constant_server() as bare:
            service = httpx.QueryParams({"service": config.auth.service})
            token_url = f"{dockyard.url}/v2/token?{service}&scope={SCOPE}"
            for secret in (app_token, PASSWORD):  # one argon2 check, not 32 at once
                check_token(token_url, (USER, secret), config)
            targets = [
                Target("bare", bare.url, "", bare.pid),
                Target("app-token", token_url, basic(USER, app_token), dockyard.pid),
                Target("password", token_url, basic(USER, PASSWORD), dockyard.pid),
                Target("distinct", f"{dockyard.url}/v2/token?{service}", basic(USER, app_token),
                       dockyard.pid, (f"&scope=repository:{NAMESPACE}/app", str(DISTINCT),
                                      ":pull")),
            ]
            print(f"dockyard {dockyard.url} (pid {dockyard.pid}), bare aiohttp {bare.url}"
                  f" (pid {bare.pid}); wrk, {args.connections} connections, {args.seconds} s"
                  f" per load after {WARMUP_SECONDS} s unmeasured; scope {SCOPE}\n")
            for target in targets:
                wrk(target, args.connections, WARMUP_SECONDS)
            for number in range(1, ROUNDS + 1):
                for target in targets:
                    load = measure(target, number, args)
                    loads.append(load)
                    print("  ".join(f"{h}={c}" for h, c in
                                    zip(HEADERS, row_of(load, loads), strict=True)))
    print()
    report(loads)


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


def check_token(url: str, auth: tuple[str, str], config: Config) -> None:
    """One token, checked: the load measures real issuance, not an error path."""
    response = httpx.get(url, auth=auth, timeout=10)
    response.raise_for_status()
    claims = jwt.decode(response.json()["token"], options={"verify_signature": False})
    expected = [{"type": "repository", "name": f"{NAMESPACE}/app", "actions": ["pull"]}]
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
    """The baseline server, run as ``dockyard serve`` runs its application (services/cli.py)."""
    async def handler(_: web.Request) -> web.Response:
        return web.Response(body=CONSTANT_BODY, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v2/token", handler)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None,
                handler_cancellation=True, loop=uvloop.new_event_loop())


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

def measure(target: Target, number: int, args: argparse.Namespace) -> Load:
    before = cpu_seconds(target.pid)
    summary = wrk(target, args.connections, args.seconds)
    server_cpu = cpu_seconds(target.pid) - before
    return Load(target.kind, number, summary["requests"], summary["duration_us"] / 1e6,
                summary["p50_us"] / 1e3, summary["p99_us"] / 1e3, summary["max_us"] / 1e3,
                server_cpu)


def wrk(target: Target, connections: int, seconds: int) -> dict[str, object]:
    """GET ``target`` for ``seconds``; raise unless every response was a 2xx."""
    completed = subprocess.run(
        ["wrk", "--threads", "1", "--connections", str(connections), "--duration", f"{seconds}s",
         "--timeout", "10s", "--script", str(WRK_SCRIPT), target.url, "--", *target.wrk_args],
        env={**os.environ, "WRK_AUTHORIZATION": target.authorization},
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    )
    summary: dict[str, object] = json.loads(completed.stdout.strip().splitlines()[-1])
    errors = summary["errors"]
    if not isinstance(errors, dict) or any(errors.values()) or not summary["requests"]:
        raise RuntimeError(f"wrk on {target.kind}: {summary['requests']} requests, errors"
                           f" {errors} (status: responses >= 400; see the server's log)")
    return summary


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from proc(5) stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


# the report ---------------------------------------------------------------------------------

HEADERS = ("kind", "round", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "server CPU",
           "CPU µs/req", "req/s to bare", "bare µs to µs")


def _bare_of(load: Load, loads: list[Load]) -> Load:
    return next(b for b in loads if b.kind == "bare" and b.round == load.round)


def row_of(load: Load, loads: list[Load]) -> tuple[object, ...]:
    bare = _bare_of(load, loads)
    return (load.kind, load.round, f"{load.requests:,}", f"{load.rate:,.0f}",
            f"{load.p50_ms:.1f}", f"{load.p99_ms:.1f}", f"{load.max_ms:.1f}",
            f"{load.server_cpu_seconds / load.seconds:.0%}", f"{load.cpu_us:.0f}",
            f"{load.rate / bare.rate:.0%}", f"{bare.cpu_us / load.cpu_us:.0%}")


def _range(values: list[float], fmt: str) -> str:
    return f"{min(values):{fmt}} to {max(values):{fmt}}"


def report(loads: list[Load]) -> None:
    print_table(HEADERS, [row_of(load, loads) for load in loads])
    verdict = {True: "met", False: "MISSED"}.__getitem__
    bare = [load for load in loads if load.kind == "bare"]
    print(f"\nbare aiohttp: {_range([b.rate for b in bare], ',.0f')} req/s,"
          f" {_range([b.cpu_us for b in bare], '.0f')} µs CPU per request")
    for kind in ("app-token", "password", "distinct"):
        runs = [load for load in loads if load.kind == kind]
        to_bare = [r.rate / _bare_of(r, loads).rate for r in runs]
        cpu_to_bare = [_bare_of(r, loads).cpu_us / r.cpu_us for r in runs]
        p99 = [r.p99_ms for r in runs]
        judged = kind != "distinct"
        print(f"{kind}: {_range([r.rate for r in runs], ',.0f')} tokens/s,"
              f" {_range([r.cpu_us for r in runs], '.0f')} µs CPU per request;"
              f" {_range(to_bare, '.0%')} of bare's req/s, {_range(cpu_to_bare, '.0%')} by CPU"
              + (f" ({verdict(min(to_bare) >= TARGET_RATIO_TO_BARE)}"
                 f" ≥ {TARGET_RATIO_TO_BARE:.0%})" if judged else "")
              + f"; p99 {_range(p99, '.1f')} ms"
              + (f" ({verdict(max(p99) <= TARGET_P99_MS)} ≤ {TARGET_P99_MS:.0f} ms)"
                 if judged else ""))

if __name__ == "__main__":
    main()
