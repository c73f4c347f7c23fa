"""Reading image layers as a stream: decompress, walk the tar, keep what detectors ask for.

A layer (image-spec layer.md) is a tar archive, uncompressed, gzip or zstd. It is read as it
arrives, in the scan's child process (services/scanner/sandbox.py streams it there from the
registry's response): the bytes pass through a thread that decompresses and walks the tar
headers (tarfile's stream mode ``r|``, which never seeks), keeping only regular files whose
path a detector wants, up to that detector's size cap. Nothing is written to disk and at most
one chunk queue plus the kept files are held in memory, whatever the layer's size.

Whiteouts (image-spec layer.md "Whiteouts"): ``dir/.wh.name`` deletes ``dir/name`` and all
below it from the layers underneath; ``dir/.wh..wh..opq`` hides everything the lower layers had
under ``dir``. ``FileView.apply`` merges layers bottom-up with those rules, so detectors see
the image's final filesystem, each file attributed to the layer it came from.

Hostile archives give a ``LayerError`` naming the problem (corrupt or truncated compression,
not a tar, wrong digest), ``Refused`` when they go over the scan's ``Budget``
(services/scanner/limits.py: bytes unpacked, entries, kept bytes), or a warning for entries that
are skipped (``..`` or absolute names, absurdly deep paths, files over a cap); nothing here
recurses over the path depth or buffers a whole layer.
"""

from __future__ import annotations

import gzip
import re
import tarfile
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import zstandard

from services.scanner.chunks import ChunkSource, StreamError, read_in_thread
from services.scanner.detectors.base import Detector, LayerFile
from services.scanner.limits import Budget

__all__ = [
    "LAYER_MEDIA_TYPES",
    "FileView",
    "LayerContents",
    "LayerError",
    "Selector",
    "read_layer",
]

# image-spec media-types.md and the Docker schema 2 equivalents; "nondistributable" variants
# (deprecated, but still in the wild for Windows base layers) read the same way.
LAYER_MEDIA_TYPES = frozenset({
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
})

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
# Deeper or longer names than any real filesystem holds (Linux PATH_MAX is 4096) are skipped.
MAX_PATH_DEPTH = 256
MAX_PATH_LENGTH = 4096
# The largest pax extended header or GNU long name/link entry read: tarfile reads these whole
# into memory before the entry they describe, so a hostile layer could claim gigabytes. Real
# ones hold a path (PATH_MAX 4096) and a few xattrs (64 KiB each at most, Linux xattr(7)).
MAX_HEADER_BYTES = 1 << 20
# Reads of the decompressed stream once tarfile is done with it (trailer, padding).
TAR_BUFFER = 1 << 20

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class LayerError(Exception):
    """A layer cannot be read; the message names the layer and what is wrong with it."""


class Selector:
    """Which paths any detector wants, and the largest size any of them would read (at most
    ``file_bytes``)."""

    def __init__(self, detectors: Sequence[Detector], file_bytes: int | None = None) -> None:
        self._detectors = tuple(detectors)
        self._file_bytes = file_bytes
        # One alternation, one regex call per tar entry: the hot path of a large layer.
        self._any = re.compile("|".join(f"(?:{d.pattern})" for d in detectors) or "(?!)")

    def cap(self, path: str) -> int | None:
        """None when no detector wants ``path``, else the largest size one of them reads."""
        if self._any.fullmatch(path) is None:
            return None
        cap = max(d.max_bytes for d in self._detectors if d.wants(path))
        return cap if self._file_bytes is None else min(cap, self._file_bytes)


@dataclass
class LayerContents:
    """What one layer contributes to the image, reduced to what detectors care about."""

    digest: str
    files: dict[str, LayerFile] = field(default_factory=dict)
    # Whiteouts, and wanted paths replaced by something not readable (a symlink): these paths
    # and everything below them are gone from the lower layers.
    removed: set[str] = field(default_factory=set)
    # Directories whose lower-layer contents are hidden ("" is the root).
    opaque: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)


class FileView:
    """The image's filesystem, reduced to wanted files, as layers are applied bottom-up."""

    def __init__(self) -> None:
        self.files: dict[str, LayerFile] = {}

    def apply(self, layer: LayerContents) -> None:
        if layer.removed or layer.opaque:
            for path in [p for p in self.files if _hidden(p, layer.removed, layer.opaque)]:
                del self.files[path]
        self.files.update(layer.files)


def _hidden(path: str, removed: set[str], opaque: set[str]) -> bool:
    if path in removed or "" in opaque:
        return True
    # Walk the ancestors by slicing, not recursion: a path may be thousands of levels deep.
    end = path.rfind("/")
    while end > 0:
        ancestor = path[:end]
        if ancestor in removed or ancestor in opaque:
            return True
        end = path.rfind("/", 0, end)
    return False


async def read_layer(
    chunks: AsyncIterator[bytes],
    *,
    digest: str,
    media_type: str,
    selector: Selector,
    budget: Budget | None = None,
) -> LayerContents:
    """Stream one layer blob through decompression and the tar reader.

    ``chunks`` are the blob's bytes as they arrive. The CPU work runs in a worker thread fed
    through a bounded queue (``services.scanner.chunks``), so the event loop only moves chunks.
    The blob must hash to ``digest`` (sha256), or the layer is refused: a scan of other bytes
    would be a wrong report.
    What the layer costs is charged to ``budget`` (the scan's, shared by its layers; a fresh
    default one when None), and going over it raises ``Refused``.
    """
    if media_type not in LAYER_MEDIA_TYPES:
        raise LayerError(f"layer {digest}: media type {media_type!r} is not a filesystem layer")
    spent = budget or Budget()
    return await read_in_thread(
        chunks, lambda source: _read_tar(source, digest, selector, spent),
        name=f"layer-pump-{digest[:19]}")


def _read_tar(
    source: ChunkSource, digest: str, selector: Selector, budget: Budget
) -> LayerContents:
    head = source.peek(len(_ZSTD_MAGIC))
    stream: _Readable
    if head.startswith(_GZIP_MAGIC):
        # GzipFile reads concatenated members (pigz, some builders) and never seeks to read.
        compression, stream = "gzip", gzip.GzipFile(fileobj=source, mode="rb")
    elif head.startswith(_ZSTD_MAGIC):
        compression = "zstd"
        stream = zstandard.ZstdDecompressor().stream_reader(
            source, read_across_frames=True  # type: ignore[arg-type]  # any read() will do
        )
    else:
        compression, stream = "tar", source
    contents = LayerContents(digest)
    tracked = _Tracked(stream, source, budget, digest)
    try:
        with tarfile.open(  # type: ignore[call-overload]  # typeshed wants an IO, read() is all
            fileobj=tracked, mode="r|", tarinfo=_BoundedTarInfo,
        ) as archive:
            _walk(archive, contents, selector, budget)
            end = archive.offset
        if not tracked.zero_block_at(end):
            # tarfile stops quietly at a header it cannot parse or at a premature end once
            # past the first entry; the missing end-of-archive block (POSIX ustar: two zero
            # blocks) is how that shows.
            raise LayerError(f"layer {digest}: the tar archive is truncated or corrupt at"
                             f" byte {end} (no end-of-archive marker there)")
        # Decompress to the end: a corrupt or truncated trailer must not pass unnoticed.
        while tracked.read(TAR_BUFFER):
            pass
        source.drain()
    except (gzip.BadGzipFile, zlib.error, zstandard.ZstdError) as exc:
        raise LayerError(f"layer {digest}: corrupt {compression} data ({exc})") from None
    except EOFError:
        raise LayerError(f"layer {digest}: truncated {compression} data") from None
    except (_HugeHeaderError, StreamError) as exc:
        raise LayerError(f"layer {digest}: {exc}") from exc.__cause__
    except tarfile.TarError as exc:
        # tarfile turns a zlib error met while reading a header into a ReadError.
        problem = (f"corrupt {compression} data" if str(exc).startswith("zlib error")
                   else "not a readable tar archive")
        raise LayerError(f"layer {digest}: {problem} ({exc})") from None
    computed = "sha256:" + source.sha256.hexdigest()
    if digest.startswith("sha256:") and computed != digest:
        raise LayerError(f"layer {digest}: the {source.size} bytes received hash to {computed}")
    return contents


class _HugeHeaderError(Exception):
    pass


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses metadata entries (pax headers, GNU long names) larger than MAX_HEADER_BYTES
    before tarfile reads them into memory."""

    _METADATA = frozenset({tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                           tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK})

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in self._METADATA and self.size > MAX_HEADER_BYTES:
            raise _HugeHeaderError(f"a tar metadata entry (type {self.type!r}) of {self.size}"
                                   f" bytes at byte {self.offset}, over the"
                                   f" {MAX_HEADER_BYTES}-byte limit; no real layer has one")
        return super()._proc_member(archive)  # type: ignore[misc,no-any-return]


class _Tracked:
    """The decompressed stream as tarfile reads it, remembering the last two reads, and
    charging what is read and decompressed to the budget.

    tarfile's stream reads ``bufsize`` bytes at a time (its default record size: a larger one
    makes every 512-byte header read copy the rest of the buffer) and never further ahead than
    one read, so the block where it stopped is always within the last two.
    """

    def __init__(self, stream: _Readable, source: ChunkSource, budget: Budget,
                 digest: str) -> None:
        self._stream = stream
        self._source = source
        self._budget = budget
        self._digest = digest
        self._received = 0
        self.position = 0
        self._previous = (0, b"")
        self._last = (0, b"")

    def read(self, size: int = -1, /) -> bytes:
        data = self._stream.read(size)
        # Compressed bytes count too: empty gzip members inflate to nothing, forever.
        received, self._received = self._source.size - self._received, self._source.size
        self._budget.read(len(data) + received, self._digest)
        self._previous, self._last = self._last, (self.position, data)
        self.position += len(data)
        return data

    def zero_block_at(self, offset: int) -> bool:
        while self.position < offset + tarfile.BLOCKSIZE and self.read(TAR_BUFFER):
            pass
        start = self._previous[0]
        window = self._previous[1] + self._last[1]
        if offset < start:
            return False
        block = window[offset - start: offset - start + tarfile.BLOCKSIZE]
        return len(block) == tarfile.BLOCKSIZE and not block.strip(b"\0")


class _Skipped:
    """Entries skipped for one reason: counted, with the first name kept for the warning."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.count = 0
        self.example = ""

    def add(self, name: str) -> None:
        if not self.count:
            self.example = name[:200]
        self.count += 1

    def warning(self, digest: str) -> str | None:
        if not self.count:
            return None
        return (f"layer {digest}: skipped {self.count} entries {self.reason}"
                f" (first: {self.example!r})")


def _walk(
    archive: tarfile.TarFile, contents: LayerContents, selector: Selector, budget: Budget
) -> None:
    traversal = _Skipped("with '..' in their names")
    absolute = _Skipped("with absolute names")
    deep = _Skipped(f"deeper than {MAX_PATH_DEPTH} levels or longer than {MAX_PATH_LENGTH}")
    oversized: list[str] = []
    while (member := archive.next()) is not None:
        # Stream mode still appends every header to ``members``; a layer of a million files
        # would hold them all. Nothing here looks back, so drop them as we go.
        archive.members.clear()  # type: ignore[attr-defined]  # not in typeshed, but public
        budget.entry(contents.digest)
        path = _normalise(member.name, traversal, absolute, deep)
        if path is None:
            continue
        base = path.rpartition("/")[2]
        if base.startswith(WHITEOUT_PREFIX):
            parent = path[: len(path) - len(base)].rstrip("/")
            if base == OPAQUE_MARKER:
                contents.opaque.add(parent)
            else:
                target = base[len(WHITEOUT_PREFIX):]
                contents.removed.add(f"{parent}/{target}" if parent else target)
            continue
        if member.isdir():
            continue
        cap = selector.cap(path)
        if cap is None:
            continue
        _keep(archive, member, path, cap=cap, contents=contents, oversized=oversized,
              budget=budget)
    for skipped in (traversal, absolute, deep):
        if (warning := skipped.warning(contents.digest)) is not None:
            contents.warnings.append(warning)
    contents.warnings.extend(oversized)


def _keep(
    archive: tarfile.TarFile,
    member: tarfile.TarInfo,
    path: str,
    *,
    cap: int,
    contents: LayerContents,
    oversized: list[str],
    budget: Budget,
) -> None:
    digest = contents.digest
    if member.isreg():
        content = None
        if member.size <= cap:
            budget.keep(member.size, digest, path)
            extracted = archive.extractfile(member)
            content = extracted.read() if extracted is not None else b""
            if len(content) != member.size:
                raise tarfile.ReadError(f"unexpected end of data in {path!r}")
        else:
            oversized.append(f"layer {digest}: {path} is {member.size} bytes, over the"
                             f" {cap}-byte limit; not read")
        contents.files[path] = LayerFile(path, digest, member.size, content)
        contents.removed.discard(path)
        return
    if member.islnk():
        # A hard link points at an earlier entry of the same layer (image-spec layer.md).
        target = contents.files.get(member.linkname.lstrip("/"))
        if target is not None:
            # The bytes are shared, but each link is one more file every detector parses (and
            # decodes into a copy): a thousand links to one file cost a thousand files.
            budget.keep(target.size if target.content is not None else 0, digest, path)
            contents.files[path] = LayerFile(path, digest, target.size, target.content)
            return
    # A symlink, device or dangling link where a wanted file was: the lower file is gone.
    contents.files.pop(path, None)
    contents.removed.add(path)


def _normalise(name: str, traversal: _Skipped, absolute: _Skipped, deep: _Skipped) -> str | None:
    """The entry's path relative to the image root, or None when it must be skipped."""
    if len(name) > MAX_PATH_LENGTH or name.count("/") > MAX_PATH_DEPTH:
        deep.add(name)
        return None
    while name.startswith("./"):
        name = name[2:]
    if name.startswith("/"):
        absolute.add(name)
        return None
    name = name.rstrip("/")
    if "//" in name or "/./" in name or name.endswith("/.") or ".." in name:
        parts = [part for part in name.split("/") if part not in {"", "."}]
        if ".." in parts:
            traversal.add(name)
            return None
        name = "/".join(parts)
    return name or None

