"""Raw layer blobs for the layer-reader tests: any entry a hostile or odd tar may hold."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import zstandard

__all__ = ["Entry", "bomb", "chunks", "digest_of", "tar_bytes", "tar_gz", "tar_header", "tar_zstd"]


@dataclass(frozen=True)
class Entry:
    name: str
    content: bytes = b""
    kind: bytes = tarfile.REGTYPE
    linkname: str = ""


def tar_bytes(entries: Iterable[Entry | tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for item in entries:
            entry = Entry(*item) if isinstance(item, tuple) else item
            info = tarfile.TarInfo(entry.name)
            info.type = entry.kind
            info.linkname = entry.linkname
            info.mode = 0o755 if entry.kind == tarfile.DIRTYPE else 0o644
            if entry.kind == tarfile.REGTYPE:
                info.size = len(entry.content)
                tar.addfile(info, io.BytesIO(entry.content))
            else:
                tar.addfile(info)
    return buffer.getvalue()


def tar_gz(entries: Iterable[Entry | tuple[str, bytes]]) -> bytes:
    return gzip.compress(tar_bytes(entries), mtime=0)


def tar_zstd(entries: Iterable[Entry | tuple[str, bytes]]) -> bytes:
    return zstandard.ZstdCompressor().compress(tar_bytes(entries))


def digest_of(blob: bytes) -> str:
    return "sha256:" + hashlib.sha256(blob).hexdigest()


async def chunks(blob: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for start in range(0, len(blob), size):
        yield blob[start:start + size]


def tar_header(entry: Entry, size: int | None = None) -> bytes:
    """One entry's ustar header, for streams written piece by piece (``bomb``)."""
    info = tarfile.TarInfo(entry.name)
    info.type = entry.kind
    info.linkname = entry.linkname
    info.size = len(entry.content) if size is None else size
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def bomb(compression: str, unpacked: int) -> bytes:
    """A layer of one file of ``unpacked`` zero bytes, compressed without ever holding it:
    a few hundred kilobytes of gzip (a few kilobytes of zstd) per gigabyte."""
    block = bytes(1 << 20)
    if compression == "gzip":
        gz = zlib.compressobj(9, zlib.DEFLATED, 31)
        compress, flush = gz.compress, gz.flush
    else:
        zs = zstandard.ZstdCompressor(level=3).compressobj()
        compress, flush = zs.compress, zs.flush
    pieces = [compress(tar_header(Entry("junk"), unpacked))]
    pieces.extend(compress(block) for _ in range(unpacked // len(block)))
    pieces += [compress(bytes(2 * tarfile.BLOCKSIZE)), flush()]
    return b"".join(pieces)
