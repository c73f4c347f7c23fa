"""RPM packages from the SQLite rpmdb (rpm ≥ 4.16: Fedora 33+, RHEL 9, Amazon Linux 2023).

``var/lib/rpm/rpmdb.sqlite`` (or ``usr/lib/sysimage/rpm/rpmdb.sqlite``) has a ``Packages``
table of ``(hnum, blob)``; each blob is an rpm header without its lead (rpm's
docs/manual/format_header.md, lib/header.c ``headerImport``): two big-endian int32s, the index
entry count ``il`` and data length ``dl``, then ``il`` entries of (tag, type, offset, count)
and ``dl`` bytes of data.

The database is untrusted input, and an SQLite file is a program: ``Packages`` can be a view
over a recursive CTE that never ends and spills its sort to temporary files. So it is opened
from memory (``sqlite3.deserialize``, never written to disk, so there is no file to open
``immutable``), read-only (``query_only``), with temporary storage in memory, no attached
databases, ``trusted_schema`` off, an authorizer that allows exactly one statement shape (a
SELECT of the ``hnum`` and ``blob`` columns of a real ``Packages`` table: no view, no function,
no recursion, no generated column) and a progress handler that aborts after ``MAX_STEPS``
virtual-machine steps. A database that trips any fails the scan (``Refused``); the scan's
process has a memory limit besides (services/scanner/sandbox.py).

Older databases cannot be read here and are reported, not silently skipped: Berkeley DB
(``Packages``, RHEL ≤ 8, CentOS 7/8, Amazon Linux 2) needs a hash-database page reader (the
same header blobs sit in BDB hash pages), and NDB (``Packages.db``, SUSE) its own simple
slot/blob format; claircore implements both in Go.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Sequence

from services.scanner.detectors.base import Detected, Detector, LayerFile, too_large
from services.scanner.limits import Refused
from services.scanner.models import Package

__all__ = ["DETECTOR", "parse_header", "scan"]

NAME = "rpm"
VERSION = "1"
MAX_BYTES = 64 * 1024 * 1024
SQLITE_DBS = ("var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite")
UNSUPPORTED = {
    "Packages": "Berkeley DB rpmdb (RHEL 8 and older) is not supported",
    "Packages.db": "NDB rpmdb (SUSE) is not supported",
}

# rpmtag.h
TAG_NAME, TAG_VERSION, TAG_RELEASE, TAG_EPOCH, TAG_ARCH, TAG_SOURCERPM = (
    1000, 1001, 1002, 1003, 1022, 1044)
TYPE_INT32, TYPE_STRING, TYPE_STRING_ARRAY, TYPE_I18NSTRING = 4, 6, 8, 9
_ENTRY = struct.Struct(">iiii")
_PREAMBLE = struct.Struct(">ii")
_WAL_FLAGS = slice(18, 20)
_WANTED = frozenset({TAG_NAME, TAG_VERSION, TAG_RELEASE, TAG_EPOCH, TAG_ARCH, TAG_SOURCERPM})
_QUERY = "SELECT blob FROM Packages ORDER BY hnum"
_COLUMNS = frozenset({"hnum", "blob"})
# Virtual-machine steps the query may take: reading a real 64 MiB rpmdb takes a few million.
MAX_STEPS = 200_000_000
_STEPS_PER_CHECK = 10_000


class HeaderError(ValueError):
    pass


def parse_header(blob: bytes) -> dict[int, str | int]:
    """The tags Dockyard needs from one header blob; HeaderError when it is malformed."""
    if len(blob) < _PREAMBLE.size:
        raise HeaderError("header shorter than its preamble")
    count, length = _PREAMBLE.unpack_from(blob)
    data_start = _PREAMBLE.size + count * _ENTRY.size
    if count < 0 or length < 0 or data_start + length > len(blob):
        raise HeaderError(f"header claims {count} entries and {length} bytes of data")
    data = blob[data_start:data_start + length]
    tags: dict[int, str | int] = {}
    for position in range(count):
        tag, kind, offset, _ = _ENTRY.unpack_from(blob, _PREAMBLE.size + position * _ENTRY.size)
        if tag not in _WANTED:
            continue
        if not 0 <= offset < len(data):
            raise HeaderError(f"tag {tag} points outside the header data")
        if kind in {TYPE_STRING, TYPE_STRING_ARRAY, TYPE_I18NSTRING}:
            end = data.find(b"\0", offset)
            if end < 0:
                raise HeaderError(f"tag {tag} is not NUL-terminated")
            tags[tag] = data[offset:end].decode("utf-8", "replace")
        elif kind == TYPE_INT32 and offset + 4 <= len(data):
            tags[tag] = struct.unpack_from(">i", data, offset)[0]
    return tags


def _evr(epoch: str | int | None, version: str, release: str) -> str:
    return f"{epoch}:{version}-{release}" if epoch not in {None, 0} else f"{version}-{release}"


def _package(tags: dict[int, str | int], file: LayerFile) -> Package | None:
    name, version, release = (str(tags.get(t, "")) for t in (TAG_NAME, TAG_VERSION, TAG_RELEASE))
    # gpg-pubkey entries are imported signing keys, not software.
    if not name or not version or name == "gpg-pubkey":
        return None
    epoch = tags.get(TAG_EPOCH)
    full = _evr(epoch, version, release)
    source_name = source_version = None
    source_rpm = str(tags.get(TAG_SOURCERPM, ""))
    if source_rpm.endswith(".src.rpm"):
        # name-version-release.src.rpm; the name itself may contain dashes.
        parts = source_rpm.removesuffix(".src.rpm").rsplit("-", 2)
        if len(parts) == 3:  # noqa: PLR2004 - name, version, release
            source_name = parts[0] if parts[0] != name else None
            source = _evr(epoch, parts[1], parts[2])
            source_version = source if source != full else None
    return Package(kind="rpm", name=name, version=full, source_name=source_name,
                   source_version=source_version, path=file.path, layer=file.layer)


def _rollback_journal(content: bytes) -> bytes:
    """The database with its header saying "rollback journal" instead of "WAL".

    rpm keeps rpmdb.sqlite in WAL mode (header bytes 18 and 19 are 2, sqlite.org/fileformat.html
    "1.3.4"); SQLite cannot open a WAL database from memory, and a committed image's WAL is
    checkpointed, so reading it as a journal-mode file gives the same rows.
    """
    if len(content) > _WAL_FLAGS.stop and content[_WAL_FLAGS] == b"\x02\x02":
        return content[:_WAL_FLAGS.start] + b"\x01\x01" + content[_WAL_FLAGS.stop:]
    return content


class _Guard:
    """The authorizer and progress handler of one untrusted database, remembering which of
    them stopped the query."""

    def __init__(self) -> None:
        self.denied = ""
        self.checks = 0

    def authorize(self, action: int, arg1: str | None, arg2: str | None, database: str | None,
                  source: str | None) -> int:
        """sqlite.org/c3ref/set_authorizer.html; ``source`` names the view or trigger behind an
        access, which a plain table read never has."""
        if action == sqlite3.SQLITE_SELECT or (
                action == sqlite3.SQLITE_READ and arg1 == "Packages" and arg2 in _COLUMNS
                and database == "main" and source is None):
            return sqlite3.SQLITE_OK
        self.denied = self.denied or f"action {action} on {arg1 or arg2!r} via {source!r}"
        return sqlite3.SQLITE_DENY

    def progress(self) -> int:
        self.checks += 1
        return int(self.checks * _STEPS_PER_CHECK > MAX_STEPS)


def _query(content: bytes) -> list[tuple[bytes]]:
    """``_QUERY`` over the database in ``content``, guarded; Refused when the database is built
    to attack the reader, sqlite3.DatabaseError when it is merely broken."""
    connection = sqlite3.connect(":memory:")
    guard = _Guard()
    try:
        connection.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_BYTES)
        connection.execute("PRAGMA temp_store = MEMORY")
        connection.execute("PRAGMA trusted_schema = OFF")
        connection.deserialize(_rollback_journal(content))
        connection.execute("PRAGMA query_only = ON")
        # Generated columns are computed by the schema, out of the authorizer's sight.
        computed = [row[1] for row in connection.execute("PRAGMA table_xinfo(Packages)")
                    if row[1] in _COLUMNS and row[6]]
        if computed:
            raise Refused(f"its Packages computes {', '.join(computed)}; the image is refused")
        connection.set_authorizer(guard.authorize)
        connection.set_progress_handler(guard.progress, _STEPS_PER_CHECK)
        try:
            return connection.execute(_QUERY).fetchall()
        except sqlite3.DatabaseError:
            if guard.denied:
                raise Refused(f"its Packages is not a plain table ({guard.denied} denied);"
                              " the image is refused") from None
            if guard.checks * _STEPS_PER_CHECK > MAX_STEPS:
                raise Refused(f"reading it took more than {MAX_STEPS} SQLite steps; the image"
                              " is refused") from None
            raise
    finally:
        connection.close()


def _read_sqlite(file: LayerFile, content: bytes) -> tuple[list[Package], list[str]]:
    try:
        rows = _query(content)
    except Refused as exc:
        raise Refused(f"{NAME}: {file.path}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        return [], [f"{NAME}: {file.path} is not a readable rpm SQLite database ({exc})"]
    packages, warnings = [], []
    for (blob,) in rows:
        try:
            package = _package(parse_header(bytes(blob)), file)
        except HeaderError as exc:
            warnings.append(f"{NAME}: {file.path}: skipped a malformed header ({exc})")
            continue
        if package is not None:
            packages.append(package)
    return packages, warnings


def scan(files: Sequence[LayerFile]) -> Detected:
    packages: list[Package] = []
    warnings: list[str] = []
    for file in files:
        base = file.path.rpartition("/")[2]
        if base in UNSUPPORTED:
            warnings.append(f"{NAME}: {file.path}: {UNSUPPORTED[base]}; its packages are not"
                            " listed")
        elif file.content is None:
            warnings.append(too_large(NAME, file, MAX_BYTES))
        else:
            found, problems = _read_sqlite(file, file.content)
            packages.extend(found)
            warnings.extend(problems)
    return Detected(packages=tuple(packages), warnings=tuple(warnings))


DETECTOR = Detector(
    NAME, VERSION,
    r"(?:var/lib/rpm|usr/lib/sysimage/rpm)/(?:rpmdb\.sqlite|Packages|Packages\.db)",
    MAX_BYTES, scan,
)
