"""``dockyard search reindex``: rebuild the search index from the catalog."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path

from tqdm import tqdm

from services.auth.app import open_auth_store
from services.core.config import Config, load_config
from services.core.logs import configure_logging
from services.ingest.app import open_stores
from services.search.app import open_index
from services.search.reindex import ReindexReport, reindex

__all__ = ["add_commands"]

log = logging.getLogger("dockyard.search")

Subparsers = argparse._SubParsersAction  # noqa: SLF001 - argparse exports no public name for it
# Without a terminal, a progress line at most this often.
LOG_EVERY_SECONDS = 5.0


def add_commands(commands: Subparsers[argparse.ArgumentParser]) -> None:
    search = commands.add_parser("search", help="the search index")
    actions = search.add_subparsers(required=True, metavar="ACTION")
    rebuild = actions.add_parser("reindex", help="rebuild the search index from the catalog")
    rebuild.add_argument("--config", type=Path, required=True, help="path to dockyard.toml")
    rebuild.set_defaults(run=_reindex)


def _reindex(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    configure_logging(config.log.level, config.log.format)
    report = asyncio.run(_rebuild(config, interactive=sys.stderr.isatty()))
    print(f"indexed {report.namespaces} namespaces, {report.repositories} repositories,"  # noqa: T201
          f" {report.tags} tags")
    return 0


async def _rebuild(config: Config, *, interactive: bool) -> ReindexReport:
    async with AsyncExitStack() as stack:
        catalog, _ = await stack.enter_async_context(open_stores(config))
        auth = await stack.enter_async_context(open_auth_store(config))
        index = await stack.enter_async_context(open_index(config))
        namespaces = {namespace.name: namespace.description
                      for namespace, _ in await auth.namespaces(None) if namespace.name}
        started = time.monotonic()
        if interactive:
            bar = stack.enter_context(tqdm(unit=" repositories", file=sys.stderr))

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)
        else:
            last = 0.0

            def progress(done: int, total: int) -> None:
                nonlocal last
                if time.monotonic() - last >= LOG_EVERY_SECONDS or done == total:
                    last = time.monotonic()
                    log.info("reindexing", extra={"repositories": done, "of": total})

        report = await reindex(catalog, namespaces, index, progress)
        log.info("reindexed", extra={"repositories": report.repositories, "tags": report.tags,
                                     "seconds": round(time.monotonic() - started, 1)})
        return report
