"""``dockyard vulndb import|status``: the embedded engine's OSV database, for the operator."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from services.core.config import Config, load_config
from services.core.logs import configure_logging
from services.core.times import rfc3339
from services.scanner.app import open_store
from services.scanner.matcher import OsvMatcher, Rematcher
from services.scanner.vulndb.importer import import_path
from services.scanner.vulndb.models import EcosystemStatus, ImportReport
from services.scanner.vulndb.stores import open_vulndb

# open_vulndb is re-exported: the portal's admin page opens the database through this module.
__all__ = ["add_commands", "describe_age", "describe_import", "describe_status", "open_vulndb"]

log = logging.getLogger("dockyard.scanner.vulndb")

Subparsers = argparse._SubParsersAction  # noqa: SLF001 - argparse exports no public name for it
# How many broken records the import lists by name; the count is always complete.
SHOWN_BROKEN = 20


def add_commands(commands: Subparsers[argparse.ArgumentParser]) -> None:
    vulndb = commands.add_parser("vulndb", help="the OSV vulnerability database")
    actions = vulndb.add_subparsers(required=True, metavar="ACTION")
    load = actions.add_parser("import", help="import OSV records (a directory or an all.zip)")
    load.add_argument("path", type=Path, metavar="PATH")
    load.add_argument("--ecosystem", action="append", metavar="NAME",
                      help="keep only this ecosystem (Debian:12, or Debian for every release);"
                           " repeatable")
    load.add_argument("--config", type=Path, required=True, help="path to dockyard.toml")
    load.set_defaults(run=_import)
    status = actions.add_parser("status", help="what is loaded and how old it is")
    status.add_argument("--config", type=Path, required=True, help="path to dockyard.toml")
    status.set_defaults(run=_status)


def _import(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    configure_logging(config.log.level, "text")
    wanted = frozenset(args.ecosystem) if args.ecosystem else None
    report, rematched = asyncio.run(_import_into(config, args.path, wanted,
                                                 _progress(sys.stderr)))
    for line in describe_import(report):
        print(line)  # noqa: T201 - the command's output
    if rematched is not None:
        print(f"{rematched} scanned images matched again")  # noqa: T201 - the command's output
    return 0


async def _import_into(
    config: Config, path: Path, wanted: frozenset[str] | None,
    progress: Callable[[int, int], None],
) -> tuple[ImportReport, int | None]:
    """Import, then match again the stored inventories the import concerns (no layer is
    read), so findings change now rather than at serve's next ``rematch`` job. None: the
    embedded engine is not the scanner backend, its findings are not ours to change."""
    async with open_vulndb(config) as store:
        report = await import_path(store, path, ecosystems=wanted, progress=progress)
        if config.scanner.backend != "embedded":
            return report, None
        if not report.changed:
            return report, 0
        async with open_store(config) as scans:
            return report, await Rematcher(scans, store, OsvMatcher(store)).rematch(
                report.changed)


def _progress(stream: TextIO) -> Callable[[int, int], None]:
    """A progress bar on a terminal; a log line per tenth of the work otherwise."""
    tty = stream.isatty()
    logged = -1

    def show(done: int, total: int) -> None:
        nonlocal logged
        share = done / total if total else 1.0
        if tty:
            bar = "#" * int(share * 30)
            end = "\n" if done == total else ""
            stream.write(f"\r[{bar:<30}] {done}/{total} records{end}")
            stream.flush()
        elif int(share * 10) > logged:
            logged = int(share * 10)
            log.info("importing OSV records", extra={"done": done, "total": total})

    return show


def describe_import(report: ImportReport) -> list[str]:
    lines = [
        (f"{report.read} records read: {report.added} added, {report.updated} updated,"
         f" {report.unchanged} unchanged, {report.filtered} outside the ecosystems asked for,"
         f" {len(report.broken)} broken (skipped)"),
        f"{len(report.changed)} packages have changed advisories",
    ]
    lines += [f"  skipped {name}: {reason}" for name, reason in report.broken[:SHOWN_BROKEN]]
    if len(report.broken) > SHOWN_BROKEN:
        lines.append(f"  … and {len(report.broken) - SHOWN_BROKEN} more (see the log)")
    return lines


def _status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    configure_logging(config.log.level, "text")

    async def read() -> list[EcosystemStatus]:
        async with open_vulndb(config) as store:
            return await store.status()

    for line in describe_status(asyncio.run(read()), datetime.now(UTC)):
        print(line)  # noqa: T201 - the command's output
    return 0


def describe_status(status: list[EcosystemStatus], now: datetime) -> list[str]:
    if not status:
        return [("no vulnerability data loaded: images cannot be matched until"
                 " 'dockyard vulndb import PATH' has run")]
    lines = ["ecosystem  advisories  newest record  imported"]
    for entry in status:
        newest = "-" if entry.newest_modified is None else (
            f"{rfc3339(entry.newest_modified)} ({describe_age(now - entry.newest_modified)})")
        lines.append(f"{entry.ecosystem}  {entry.advisories}  {newest}"
                     f"  {rfc3339(entry.imported_at)} ({describe_age(now - entry.imported_at)})")
    return lines


def describe_age(age: timedelta) -> str:
    seconds = max(0, int(age.total_seconds()))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''} old"
    return "just now"
