"""The ``dockyard`` command."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import uvloop
from aiohttp import web

from services.auth.app import open_auth
from services.auth.cli import add_commands as add_identity_commands
from services.core.config import Config, ConfigError, load_config
from services.core.errors import DyError
from services.core.eventlog.factory import open_event_log
from services.core.logs import configure_logging
from services.core.registry import RegistryClient, RegistryError
from services.ingest.app import open_catalog_reader, open_stores
from services.ingest.reader import CatalogReader
from services.ingest.sync import sync_catalog
from services.provision import CONFIG_FILE, InitError, initialise
from services.scanner.cli import add_commands as add_vulndb_commands
from services.search.cli import add_commands as add_search_commands
from services.selection import valid_values
from services.server import SERVICES, build_app, plan
from services.transfer import add_commands as add_transfer_commands

__all__ = ["main"]

log = logging.getLogger("dockyard.cli")

# How long `dockyard up` waits for the registry it started to answer.
REGISTRY_START_SECONDS = 15


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (ConfigError, DyError, InitError) as exc:
        print(f"dockyard: {exc}", file=sys.stderr)  # noqa: T201 - the CLI's own error output
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dockyard", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    init = commands.add_parser("init", help="create a data directory (config, keys, admin)")
    _init_options(init)
    init.add_argument("--force", action="store_true", help="overwrite an existing config")
    init.set_defaults(run=_init)

    serve = commands.add_parser("serve", help="run Dockyard's services")
    serve.add_argument("--config", type=Path, required=True, help="path to dockyard.toml")
    serve.add_argument(
        "--service", action="append", metavar="NAME",
        help="run only this service (repeatable or comma-separated; default: all): "
             f"{', '.join(valid_values(SERVICES))}. NAME-api runs its routes without its"
             " consumers, NAME-consumers its consumers and jobs without its routes",
    )
    serve.set_defaults(run=_serve)

    up = commands.add_parser("up", help="init if needed, start the registry and serve")
    _init_options(up)
    # up never overwrites: it runs init only when the data directory has no config yet.
    up.set_defaults(run=_up, force=False)

    sync = commands.add_parser("sync", help="reconcile the catalog with the registry now")
    sync.add_argument("--config", type=Path, required=True, help="path to dockyard.toml")
    sync.set_defaults(run=_sync)
    add_identity_commands(commands, open_catalog_reader)
    add_transfer_commands(commands)
    add_vulndb_commands(commands)
    add_search_commands(commands)
    return parser


def _init_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--registry-url", default="http://127.0.0.1:5000")
    parser.add_argument("--listen", default="127.0.0.1:5050", metavar="HOST:PORT")
    parser.add_argument("--external-url", help="URL the registry uses to reach Dockyard")


def _init(args: argparse.Namespace) -> int:
    result = initialise(
        args.data_dir,
        registry_url=args.registry_url,
        listen=args.listen,
        external_url=args.external_url,
        admin_password=os.environ.get("DOCKYARD_ADMIN_PASSWORD") or None,
        force=args.force,
    )
    print(f"wrote {result.config_path}")  # noqa: T201
    if result.admin_password:
        print(f"admin password (shown once): {result.admin_password}")  # noqa: T201
    return 0


def _serve(args: argparse.Namespace) -> int:
    plan(args.service)  # an unknown name fails before anything starts
    config = load_config(args.config)
    _run(config, args.service)
    return 0


def _up(args: argparse.Namespace) -> int:
    config_path = args.data_dir / CONFIG_FILE
    if not config_path.exists():
        _init(args)
    config = load_config(config_path)
    binary = shutil.which(config.registry.binary)
    if binary is None:
        raise ConfigError(f"registry.binary: {config.registry.binary!r} not found on PATH "
                          "(install the Debian package docker-registry)")
    exited = _RegistryExit()
    try:
        _run(config, None, registry=_registry_process(binary, config, exited))
    except RegistryStartError as exc:
        print(f"dockyard: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    if exited.returncode is not None:
        print(f"dockyard: the registry exited with status {exited.returncode}"  # noqa: T201
              " (its log is above); Dockyard stopped too", file=sys.stderr)
        return 1
    return 0


def _run(
    config: Config,
    services: list[str] | None,
    registry: Callable[[web.Application], AsyncIterator[None]] | None = None,
) -> None:
    configure_logging(config.log.level, config.log.format)
    app = build_app(config, services)
    if registry is not None:
        app.cleanup_ctx.insert(0, registry)
    app.on_startup.append(_freeze_heap)  # after every cleanup_ctx has started
    log.info("serving", extra={
        "listen": config.server.listen,
        "services": {name: sorted(parts) for name, parts in plan(services).items()},
    })
    # handler_cancellation: a client that goes away (a closed live stream) frees its handler.
    # uvloop: the webhook's HTTP handling is the ingest path's largest cost on the default loop.
    web.run_app(app, host=config.server.host, port=config.server.port, print=None,
                access_log=logging.getLogger("aiohttp.access"), handler_cancellation=True,
                loop=uvloop.new_event_loop())


YOUNG_COLLECTION_AT = 10_000


async def _freeze_heap(_: web.Application) -> None:
    """Move what start-up made (modules, stores, clients) out of the collector's sight.

    A full collection walks the whole heap, mostly objects that live as long as the process;
    frozen (gc.freeze) they are skipped, so the pauses that hit whatever runs then (a scan's
    matching, a request) shrink: bench/vuln_matching.py, p95 of a 2,000-package match 577 ms
    without, 254 ms with, on a loaded machine. Collected first, so no garbage is frozen.
    """
    gc.collect()
    gc.freeze()
    # The youngest generation is collected every YOUNG_COLLECTION_AT container allocations
    # (CPython's default: 700). A webhook envelope parses into ~150 dicts and lists, nearly all
    # freed by reference counting, so the default ran a collection every few requests for
    # nothing: bench/ingest.py (4 runs each) gave 16.2k to 18.5k events/s with it, 18.3k to
    # 19.9k without.
    gc.set_threshold(YOUNG_COLLECTION_AT, *gc.get_threshold()[1:])


@dataclass
class _RegistryExit:
    """Set when the registry child exits while Dockyard is not stopping: a failure."""

    returncode: int | None = None


def _registry_process(
    binary: str, config: Config, exited: _RegistryExit
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The registry as a child process that lives and dies with the application."""

    async def context(_: web.Application) -> AsyncIterator[None]:
        # run_app's main task: it is cancelled as soon as a SIGINT/SIGTERM reaches Dockyard.
        main = asyncio.current_task()
        process = await asyncio.create_subprocess_exec(
            binary, "serve", str(config.path(config.registry.config)),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            limit=REGISTRY_LINE_LIMIT,
        )
        secret = config.webhook.secret.encode()
        relays = [asyncio.create_task(_relay_redacted(source, sink, secret))
                  for source, sink in ((process.stdout, sys.stdout.buffer),
                                       (process.stderr, sys.stderr.buffer))
                  if source is not None]
        log.info("registry started", extra={"pid": process.pid, "url": config.registry.url})

        async def watch() -> None:
            code = await process.wait()
            # Ctrl-C signals the whole process group, so the registry dies with us, and its
            # exit may be seen just before our own signal is handled: give that a moment. A
            # second signal from us would cut Dockyard's own shutdown short (and exit 1).
            for _ in range(STOP_GRACE_STEPS):
                if main is not None and main.cancelling():
                    return
                await asyncio.sleep(0.05)
            exited.returncode = code
            log.error("registry exited; stopping", extra={"returncode": code})
            os.kill(os.getpid(), signal.SIGTERM)

        if not await _answers(process, config):
            exited.returncode = process.returncode
            await asyncio.wait(relays, timeout=5)  # the log the message points at
            raise RegistryStartError(f"the registry exited with status {process.returncode}"
                                     " before answering (its log is above)")
        watcher = asyncio.create_task(watch())
        yield
        watcher.cancel()
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        await asyncio.wait(relays, timeout=5)

    return context


# How long (in steps of 50 ms) a registry exit may precede the stop signal it came with.
STOP_GRACE_STEPS = 20
# The longest registry log line relayed whole; longer ones go through in pieces.
REGISTRY_LINE_LIMIT = 1024 * 1024
REDACTED = b"[webhook secret redacted]"


async def _relay_redacted(source: asyncio.StreamReader, sink: BinaryIO, secret: bytes) -> None:
    """Copy the registry's output to ours with the webhook secret blanked out.

    Registry 2.8 logs each notification endpoint at start with its headers, and so the
    ``Authorization`` header that carries the secret. Lines are relayed whole, so the secret
    cannot be split between two reads.
    """
    while True:
        try:
            line = await source.readuntil(b"\n")
        except asyncio.IncompleteReadError as end:
            line = end.partial  # the output ended without a newline
        except asyncio.LimitOverrunError as long:
            line = await source.read(long.consumed)
        if not line:
            return
        sink.write(line.replace(secret, REDACTED))
        sink.flush()


class RegistryStartError(Exception):
    pass


async def _answers(process: asyncio.subprocess.Process, config: Config) -> bool:
    """Wait until the registry answers on its API, or has exited (False)."""
    async with RegistryClient(config.registry.url, timeout=1.0) as registry:
        for _ in range(REGISTRY_START_SECONDS * 10):
            if process.returncode is not None:
                return False
            if await registry.ping():
                return True
            await asyncio.sleep(0.1)
    return process.returncode is None


def _sync(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    configure_logging(config.log.level, "text")
    return asyncio.run(_sync_once(config))


async def _sync_once(config: Config) -> int:
    opened = AsyncExitStack()
    event_log = await opened.enter_async_context(open_event_log(config))
    try:
        catalog, _ = await opened.enter_async_context(open_stores(config))
        # The registry demands tokens: sync gets Dockyard's own, with catalog and pull access.
        async with open_auth(config, event_log, CatalogReader(catalog)) as auth, RegistryClient(
            config.registry.url, timeout=config.registry.timeout_seconds,
            token_provider=auth.authority.service_token,
        ) as registry:
            seen = 0

            def progress(repository: str) -> None:
                nonlocal seen
                seen += 1
                print(f"\r{seen} repositories read ({repository})", end="", file=sys.stderr)  # noqa: T201

            report = await sync_catalog(registry, catalog, event_log, progress=progress)
    except RegistryError as exc:
        print(f"\ndockyard: registry at {config.registry.url}: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    finally:
        await opened.aclose()
    print(f"\n{report.repositories} repositories, {report.tags} tags;"  # noqa: T201
          f" {report.events} change(s) appended for the consumers")
    return 0
