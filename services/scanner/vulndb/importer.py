"""``dockyard vulndb import PATH``: OSV records from a directory or an OSV ``all.zip``.

OSV publishes one zip per ecosystem (``Debian/all.zip`` …) with one JSON file per record. The
zip is read member by member, never extracted; records are parsed in a worker thread (file
reads and JSON off the event loop) and stored in batches, each batch one transaction, so an
interrupted import keeps what it finished and a re-run completes it. Importing is idempotent:
``modified`` decides (see ``VulnStore.upsert``). A record that cannot be read or parsed is
skipped and reported with its reason; it never stops the others.
"""

from __future__ import annotations

import asyncio
import logging
import zipfile
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from services.core.errors import Invalid
from services.scanner.vulndb.models import Advisory, ImportReport
from services.scanner.vulndb.osv import BrokenRecord, parse_record
from services.scanner.vulndb.ports import VulnStore

__all__ = ["BATCH", "Progress", "import_path"]

log = logging.getLogger("dockyard.scanner.vulndb")

BATCH = 500
# The largest OSV records (a kernel CVE with every Debian release) are a few hundred KiB; a
# member claiming more is not a record, and reading it whole could exhaust memory.
MAX_RECORD_BYTES = 16 * 1024 * 1024
# (records read so far, records in the source)
Progress = Callable[[int, int], None]
_Entry = tuple[str, Callable[[], bytes]]


async def import_path(
    store: VulnStore,
    path: Path,
    *,
    ecosystems: frozenset[str] | None = None,
    progress: Progress | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ImportReport:
    entries, closing = await asyncio.to_thread(_open_source, path)
    report = ImportReport()
    started = now()
    try:
        for start in range(0, len(entries), BATCH):
            chunk = entries[start:start + BATCH]
            advisories = await asyncio.to_thread(_parse, chunk, ecosystems, report)
            result = await store.upsert(advisories, started)
            report.added += result.added
            report.updated += result.updated
            report.unchanged += result.unchanged
            report.changed |= result.changed
            report.read += len(chunk)
            if progress is not None:
                progress(report.read, len(entries))
    finally:
        closing()
    for name, reason in report.broken:
        log.warning("skipped a broken OSV record", extra={"file": name, "reason": reason})
    return report


def _parse(
    chunk: list[_Entry], ecosystems: frozenset[str] | None, report: ImportReport
) -> list[Advisory]:
    advisories = []
    for name, read in chunk:
        try:
            advisory = parse_record(read(), ecosystems)
        except BrokenRecord as exc:
            report.broken.append((name, str(exc)))
            continue
        # A bad CRC, corrupt deflate data, a truncated member, a vanished file.
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            report.broken.append((name, f"cannot be read: {exc}"))
            continue
        if advisory is None:
            report.filtered += 1
        else:
            advisories.append(advisory)
    return advisories


def _open_source(path: Path) -> tuple[list[_Entry], Callable[[], None]]:
    """The records of a directory (``*.json`` below it) or a zip, each with a reader."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.json") if p.is_file())
        return [(str(p.relative_to(path)), _file(p)) for p in files], lambda: None
    if not path.is_file():
        raise Invalid("no_such_source", f"{path}: no such file or directory")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise Invalid("bad_source", f"{path}: not a directory of OSV JSON files nor a zip"
                      f" of them ({exc})") from None
    members = sorted((info for info in archive.infolist()
                      if not info.is_dir() and info.filename.endswith(".json")),
                     key=lambda info: info.filename)
    return [(info.filename, _member(archive, info)) for info in members], archive.close


def _file(path: Path) -> Callable[[], bytes]:
    def read() -> bytes:
        with path.open("rb") as file:
            data = file.read(MAX_RECORD_BYTES + 1)
        if len(data) > MAX_RECORD_BYTES:
            raise BrokenRecord(f"larger than any OSV record ({MAX_RECORD_BYTES} bytes at most)")
        return data

    return read


def _member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], bytes]:
    def read() -> bytes:
        if info.file_size > MAX_RECORD_BYTES:
            raise BrokenRecord(f"{info.file_size} bytes: larger than any OSV record"
                               f" ({MAX_RECORD_BYTES} at most)")
        # ZipExtFile checks the CRC and stops at the declared size, whatever the data says.
        with archive.open(info) as member:
            return member.read(MAX_RECORD_BYTES + 1)

    return read
