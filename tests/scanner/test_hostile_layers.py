"""The hostile-layer corpus: images built to exhaust the scanner, pushed to a real registry and
scanned by the workers as in production. Each scan ends well within its timeout, failed with a
reason naming the budget (or, for what the reader never follows, done and harmless), the scan's
process stays within its memory bound and writes nothing to disk, and the next, ordinary image
scans normally.

The inputs are generated here, small: budgets are lowered so that each attack crosses one.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import os
import shutil
import sqlite3
import tarfile
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from services.core.registry import RegistryClient
from services.scanner.adapters.sqlite import SqliteScanStore
from services.scanner.limits import ScanLimits
from services.scanner.scans import ScanWorkers
from tests.scanner.layer_builder import Entry, bomb, tar_bytes, tar_gz
from tests.support.images import build_oci_image, build_raw_image
from tests.support.registry import RegistryProcess, skopeo_copy

pytestmark = pytest.mark.registry

GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
LIMITS = ScanLimits(unpacked_bytes=64 << 20, entries=20_000, kept_bytes=8 << 20,
                    file_bytes=4 << 20, memory_bytes=512 << 20)
TIMEOUT = 60.0
# Generous: a scan process is ~30 MB of Python; the limit itself is 512 MiB.
MAX_RSS_KIB = 400 << 10
MAX_SCRATCH_BYTES = 1 << 20
MAX_DISK_DROP_BYTES = 2 << 30
STATUS_D = "var/lib/dpkg/status.d"


def recursive_rpmdb() -> bytes:
    """A 4 KiB rpmdb.sqlite whose Packages is an endless recursive view, sorted: unguarded,
    SQLite spills the sort to temporary files until the disk is full."""
    database = sqlite3.connect(":memory:")
    database.execute("CREATE VIEW Packages AS WITH RECURSIVE c(x) AS"
                     " (SELECT 1 UNION ALL SELECT x + 1 FROM c)"
                     " SELECT x AS hnum, randomblob(100000) AS blob FROM c")
    data = database.serialize()
    database.close()
    return data


def fan_out() -> bytes:
    """One 1 MiB wanted file and a hundred hard links to it, each one more file to parse."""
    links = [Entry(f"{STATUS_D}/link{i}", kind=tarfile.LNKTYPE, linkname=f"{STATUS_D}/base")
             for i in range(100)]
    return tar_gz([(f"{STATUS_D}/base", b"Package: x\n" + b"#" * (1 << 20)), *links])


def hardlink_loop() -> bytes:
    """Links to themselves, to each other and to later entries: nothing to resolve."""
    return tar_gz([
        Entry("etc/os-release", kind=tarfile.LNKTYPE, linkname="etc/os-release"),
        Entry(f"{STATUS_D}/a", kind=tarfile.LNKTYPE, linkname=f"{STATUS_D}/b"),
        Entry(f"{STATUS_D}/b", kind=tarfile.LNKTYPE, linkname=f"{STATUS_D}/a"),
    ])


def symlink_chain() -> bytes:
    """etc/os-release through 10,000 symlinks, ending in a loop: never followed."""
    chain = [Entry("etc/os-release", kind=tarfile.SYMTYPE, linkname="l0")]
    chain += [Entry(f"etc/l{i}", kind=tarfile.SYMTYPE, linkname=f"l{i + 1}")
              for i in range(10_000)]
    chain.append(Entry("etc/l10000", kind=tarfile.SYMTYPE, linkname="os-release"))
    return tar_gz(chain)


def deep_directories() -> bytes:
    return tar_gz([("/".join(["d"] * 3000) + "/etc/os-release", b"ID=alpine\n")])


@dataclass(frozen=True)
class Case:
    layers: Callable[[], list[tuple[str, bytes]]]
    status: str
    # In the failed scan's reason, or in a done scan's warnings ("": none needed).
    says: str
    limits: ScanLimits = LIMITS


CASES = {
    "recursive-view rpmdb": Case(
        lambda: [(GZIP, tar_gz([("var/lib/rpm/rpmdb.sqlite", recursive_rpmdb())]))],
        "failed", "rpm: var/lib/rpm/rpmdb.sqlite: its Packages is not a plain table"),
    "gzip bomb": Case(lambda: [(GZIP, bomb("gzip", 512 << 20))], "failed", "max_unpacked_bytes"),
    "zstd bomb": Case(lambda: [(ZSTD, bomb("zstd", 512 << 20))], "failed", "max_unpacked_bytes"),
    # Each empty member costs the reader time but inflates to nothing: what was received counts.
    "empty gzip members": Case(lambda: [(GZIP, gzip.compress(b"", mtime=0) * 100_000)],
                               "failed", "max_unpacked_bytes",
                               replace(LIMITS, unpacked_bytes=1 << 20)),
    "hardlink fan-out": Case(lambda: [(GZIP, fan_out())], "failed", "max_kept_bytes"),
    "100k tiny files": Case(
        lambda: [(GZIP, tar_gz([(f"f/{i}", b"x") for i in range(100_000)]))],
        "failed", "max_entries"),
    "nested archives": Case(
        lambda: [(GZIP, gzip.compress(gzip.compress(tar_bytes([("etc/os-release", b"ID=x\n")]),
                                                    mtime=0), mtime=0))],
        "failed", "not a readable tar archive"),
    "hardlink loop": Case(lambda: [(GZIP, hardlink_loop())], "done", ""),
    "symlink chain": Case(lambda: [(GZIP, symlink_chain())], "done", ""),
    "deep directories": Case(lambda: [(GZIP, deep_directories())], "done", "deeper than 256"),
}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteScanStore]:
    opened = SqliteScanStore(tmp_path / "scans.db")
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where every temporary file of the scan goes, the server's and SQLite's alike."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setenv("TMPDIR", str(root))
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def disk_use(root: Path) -> tuple[int, int]:
    """Bytes in files under ``root``, and bytes free on its filesystem: SQLite unlinks its
    temporary files as it opens them, so only the free space shows those."""
    total = 0
    for path in root.rglob("*"):
        with contextlib.suppress(FileNotFoundError):  # removed while we looked
            total += path.lstat().st_size
    return total, shutil.disk_usage(root).free


async def scan_watching_disk(workers: ScanWorkers, scratch: Path) -> tuple[float, int, int]:
    """Run the queue; how long it took, the most the scratch directory ever held, and the
    most the free disk space dropped meanwhile (other processes write too: a loose bound)."""
    most, free_before = await asyncio.to_thread(disk_use, scratch)
    least_free = free_before
    started = time.monotonic()
    drain = asyncio.ensure_future(workers.drain())
    while not drain.done():
        held, free = await asyncio.to_thread(disk_use, scratch)
        most, least_free = max(most, held), min(least_free, free)
        await asyncio.sleep(0.05)
    await drain
    return time.monotonic() - started, most, free_before - least_free


@pytest.mark.parametrize("case", list(CASES))
async def test_a_hostile_image_ends_within_its_budget_and_the_next_scan_is_normal(
    registry: RegistryProcess, store: SqliteScanStore, tmp_path: Path, scratch: Path,
    caplog: pytest.LogCaptureFixture, case: str,
) -> None:
    hostile_case = CASES[case]
    layout = tmp_path / "oci"
    hostile = build_raw_image(layout, "hostile", hostile_case.layers(), salt=case)
    normal = build_oci_image(layout, "normal", [{"etc/os-release": b"ID=alpine\n"}], salt=case)
    for tag in ("hostile", "normal"):
        await asyncio.to_thread(skopeo_copy, f"oci:{layout}:{tag}",
                                f"docker://{registry.host}/team/app:{tag}")
    caplog.set_level(logging.INFO, logger="dockyard.scanner")
    async with RegistryClient(registry.url) as client:
        workers = ScanWorkers(store, client, matcher=None, limits=hostile_case.limits,
                              timeout=TIMEOUT)
        await store.queue(hostile, "team/app")
        seconds, disk, disk_drop = await scan_watching_disk(workers, scratch)
        record = await store.get(hostile)
        assert record is not None
        said = [record.reason or "", *(record.inventory.warnings if record.inventory else ())]
        assert (record.status, any(hostile_case.says in text for text in said)) == (
            hostile_case.status, True), said
        assert seconds < TIMEOUT / 2
        assert disk <= MAX_SCRATCH_BYTES
        assert disk_drop <= MAX_DISK_DROP_BYTES
        peaks = [r.__dict__["peak_rss_kib"] for r in caplog.records
                 if r.getMessage() == "scan process finished"]
        assert peaks
        assert all(peak is not None and peak < MAX_RSS_KIB for peak in peaks)

        await store.queue(normal, "team/app")
        await workers.drain()
    after = await store.get(normal)
    assert after is not None
    assert after.status == "done"
    assert after.inventory is not None
    assert after.inventory.distribution is not None
    assert after.inventory.distribution.id == "alpine"
    assert list(scratch.iterdir()) == []


def scan_processes() -> list[int]:
    """This process' children that are scan processes."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines()
                          if ":\t" in line)
            cmdline = (status.parent / "cmdline").read_bytes()
            if int(fields["PPid"]) == os.getpid() and b"services.scanner.child" in cmdline:
                found.append(int(status.parent.name))
    return found


async def test_a_timed_out_scan_stops_its_work(
    registry: RegistryProcess, store: SqliteScanStore, tmp_path: Path, scratch: Path
) -> None:
    """Seconds of empty gzip members against a one-second timeout: the scan fails, and neither
    a process nor a thread is left reading."""
    layout = tmp_path / "oci"
    slow = build_raw_image(layout, "slow", [(GZIP, gzip.compress(b"", mtime=0) * 400_000)])
    await asyncio.to_thread(skopeo_copy, f"oci:{layout}:slow",
                            f"docker://{registry.host}/team/app:slow")
    threads = threading.active_count()
    async with RegistryClient(registry.url) as client:
        await store.queue(slow, "team/app")
        await ScanWorkers(store, client, matcher=None, timeout=1.0).drain()
    record = await store.get(slow)
    assert record is not None
    assert (record.status, record.reason) == ("failed", "scan timed out after 1 s")
    assert scan_processes() == []
    assert threading.active_count() <= threads
