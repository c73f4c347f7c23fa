"""The streaming layer reader: formats, selection, whiteouts, and hostile archives."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import AsyncIterator, Callable, Iterable

import pytest

from services.scanner.detectors.base import Detected, Detector, LayerFile
from services.scanner.layers import FileView, LayerContents, LayerError, Selector, read_layer
from services.scanner.limits import Budget, Refused, ScanLimits
from tests.scanner.layer_builder import Entry, chunks, digest_of, tar_bytes, tar_gz, tar_zstd

GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
TAR = "application/vnd.oci.image.layer.v1.tar"

ETC = Detector("etc", "1", r"etc/[^/]+", 64, lambda _: Detected())
DEEP = Detector("deep", "1", r"(?:.*/)?wanted\.txt", 1 << 20, lambda _: Detected())
SELECTOR = Selector([ETC, DEEP])


async def read(blob: bytes, media_type: str = GZIP, digest: str | None = None) -> LayerContents:
    return await read_layer(chunks(blob, 1000), digest=digest or digest_of(blob),
                            media_type=media_type, selector=SELECTOR)


FILES: list[Entry | tuple[str, bytes]] = [
    Entry("etc", kind=tarfile.DIRTYPE), ("etc/os-release", b"ID=debian\n"),
    ("etc/motd", b"hello\n"), ("usr/bin/true", b"\x7fELF"), ("a/b/wanted.txt", b"yes")]


@pytest.mark.parametrize(("media_type", "build"), [
    (GZIP, tar_gz), (ZSTD, tar_zstd), (TAR, tar_bytes),
    # The magic bytes decide, not the media type: Docker writes ".tar.gzip" for plain tars too.
    ("application/vnd.docker.image.rootfs.diff.tar.gzip", tar_bytes),
])
async def test_keeps_only_wanted_files_whatever_the_compression(
        media_type: str, build: Callable[[list[Entry | tuple[str, bytes]]], bytes]) -> None:
    blob = build(FILES)
    contents = await read(blob, media_type)
    digest = digest_of(blob)
    assert {path: (f.content, f.layer) for path, f in contents.files.items()} == {
        "etc/os-release": (b"ID=debian\n", digest),
        "etc/motd": (b"hello\n", digest),
        "a/b/wanted.txt": (b"yes", digest),
    }
    assert contents.warnings == []


async def test_a_file_over_the_cap_is_listed_unread_with_a_warning() -> None:
    blob = tar_gz([("etc/big", b"x" * 65), ("etc/small", b"x" * 64)])
    contents = await read(blob)
    assert contents.files["etc/big"].content is None
    assert contents.files["etc/big"].size == 65
    assert contents.files["etc/small"].content == b"x" * 64
    assert contents.warnings == [
        f"layer {digest_of(blob)}: etc/big is 65 bytes, over the 64-byte limit; not read"]


async def test_wanted_files_beyond_the_budget_refuse_the_layer() -> None:
    # Many small wanted files that each pass their detector's cap but together would not fit:
    # a decompression bomb aimed at memory, not at one file's cap.
    blob = tar_gz([(f"etc/f{i}", b"x" * 64) for i in range(4)])
    within = Budget(ScanLimits(kept_bytes=256))
    await read_layer(chunks(blob, 1000), digest=digest_of(blob), media_type=GZIP,
                     selector=SELECTOR, budget=within)
    assert within.kept == 256
    with pytest.raises(Refused, match=r"add up to more than 255 bytes \(at 'etc/f3'\)"):
        await read_layer(chunks(blob, 1000), digest=digest_of(blob), media_type=GZIP,
                         selector=SELECTOR, budget=Budget(ScanLimits(kept_bytes=255)))


@pytest.mark.parametrize("tar_format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
async def test_a_huge_metadata_entry_is_refused_before_it_is_read(tar_format: int) -> None:
    # A pax header or a GNU long name is read whole before its entry: 2 MiB here, far more
    # (inflating from a few kilobytes) in an attack.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as tar:
        tar.addfile(tarfile.TarInfo("etc/" + "x" * (2 << 20)))
    with pytest.raises(LayerError, match=r"^layer sha256:\w+: a tar metadata entry .* of \d+"
                                         r" bytes at byte 0, over the 1048576-byte limit"):
        await read(gzip.compress(buffer.getvalue(), mtime=0))


async def test_dot_slash_names_and_double_slashes_are_normalised() -> None:
    contents = await read(tar_gz([("./etc/motd", b"a"), ("etc//./issue", b"b")]))
    assert sorted(contents.files) == ["etc/issue", "etc/motd"]


async def test_whiteouts_and_opaque_directories_are_recorded() -> None:
    contents = await read(tar_gz([("etc/.wh.motd", b""), ("a/.wh..wh..opq", b""),
                                  (".wh.opt", b"")]))
    assert contents.removed == {"etc/motd", "opt"}
    assert contents.opaque == {"a"}
    assert contents.files == {}


async def test_a_symlink_over_a_wanted_file_removes_it_and_a_hard_link_copies_it() -> None:
    contents = await read(tar_gz([
        Entry("etc/os-release", kind=tarfile.SYMTYPE, linkname="../usr/lib/os-release"),
        ("etc/motd", b"hi"),
        Entry("etc/issue", kind=tarfile.LNKTYPE, linkname="etc/motd"),
    ]))
    assert contents.removed == {"etc/os-release"}
    assert contents.files["etc/issue"].content == b"hi"


def layer(digest: str, files: dict[str, bytes], removed: Iterable[str] = (),
          opaque: Iterable[str] = ()) -> LayerContents:
    contents = LayerContents(digest, removed=set(removed), opaque=set(opaque))
    for path, content in files.items():
        contents.files[path] = LayerFile(path, digest, len(content), content)
    return contents


@pytest.mark.parametrize(("upper", "expected"), [
    (layer("L2", {}), {"etc/motd": "L1", "a/b/wanted.txt": "L1", "a/c/wanted.txt": "L1"}),
    (layer("L2", {"etc/motd": b"new"}),
     {"etc/motd": "L2", "a/b/wanted.txt": "L1", "a/c/wanted.txt": "L1"}),
    (layer("L2", {}, removed=["etc/motd"]), {"a/b/wanted.txt": "L1", "a/c/wanted.txt": "L1"}),
    (layer("L2", {}, removed=["a"]), {"etc/motd": "L1"}),
    (layer("L2", {}, removed=["a/b"]), {"etc/motd": "L1", "a/c/wanted.txt": "L1"}),
    # ".wh.a" must not remove "ab/…"; ancestors are whole path components.
    (layer("L2", {}, removed=["a/c/wanted"]),
     {"etc/motd": "L1", "a/b/wanted.txt": "L1", "a/c/wanted.txt": "L1"}),
    (layer("L2", {"a/d/wanted.txt": b"x"}, opaque=["a"]),
     {"etc/motd": "L1", "a/d/wanted.txt": "L2"}),
    (layer("L2", {"etc/motd": b"x"}, opaque=[""]), {"etc/motd": "L2"}),
])
def test_the_view_applies_layers_bottom_up(upper: LayerContents, expected: dict[str, str]
                                           ) -> None:
    view = FileView()
    view.apply(layer("L1", {"etc/motd": b"m", "a/b/wanted.txt": b"1", "a/c/wanted.txt": b"2"}))
    view.apply(upper)
    assert {path: f.layer for path, f in view.files.items()} == expected


async def test_names_escaping_the_root_are_skipped_with_a_warning() -> None:
    blob = tar_gz([("../etc/passwd", b"x"), ("etc/../../etc/motd", b"x"), ("/etc/motd", b"x"),
                   ("etc/os-release", b"ok")])
    contents = await read(blob)
    digest = digest_of(blob)
    assert sorted(contents.files) == ["etc/os-release"]
    assert contents.warnings == [
        f"layer {digest}: skipped 2 entries with '..' in their names (first: '../etc/passwd')",
        f"layer {digest}: skipped 1 entries with absolute names (first: '/etc/motd')",
    ]


async def test_a_ten_thousand_level_directory_is_skipped_not_recursed() -> None:
    deep = "/".join(["d"] * 10_000)
    blob = tar_gz([Entry(deep, kind=tarfile.DIRTYPE), (f"{deep}/wanted.txt", b"x"),
                   ("etc/motd", b"ok")])
    contents = await read(blob)
    assert sorted(contents.files) == ["etc/motd"]
    assert len(contents.warnings) == 1
    assert "skipped 2 entries deeper than 256 levels" in contents.warnings[0]


async def test_a_huge_file_streams_through_without_being_held() -> None:
    # 64 MiB of zeros: compressed to ~64 KiB, read back as a stream, never kept.
    blob = tar_gz([("var/huge", bytes(64 << 20)), ("etc/motd", b"after")])
    contents = await read(blob)
    assert contents.files["etc/motd"].content == b"after"


@pytest.mark.parametrize(("blob", "message"), [
    (b"\x1f\x8b\x08\x00" + b"\x00" * 6 + b"garbage that is not deflate", "corrupt gzip data"),
    (tar_gz(FILES)[:-40], "truncated gzip data"),
    (b"\x28\xb5\x2f\xfd" + b"\xff" * 32, "corrupt zstd data"),
    (tar_bytes([("etc/motd", b"x" * 5000)])[:2048], "not a readable tar archive"),
    # Cut after a whole entry: tarfile alone would end quietly there.
    (tar_bytes([("etc/motd", b"x" * 512), ("etc/issue", b"y")])[:2048], "truncated or corrupt"),
    (tar_bytes([("etc/motd", b"x" * 512)])[:1024] + b"\x01" * 1024, "truncated or corrupt"),
    (b"this is no tar at all, just text" * 20, "not a readable tar archive"),
    (b"", "not a readable tar archive"),
])
async def test_broken_layers_fail_with_the_reason(blob: bytes, message: str) -> None:
    with pytest.raises(LayerError, match=message):
        await read(blob, GZIP)


async def test_bytes_that_do_not_match_the_digest_are_refused() -> None:
    blob = tar_gz(FILES)
    with pytest.raises(LayerError, match="hash to sha256:"):
        await read(blob, digest="sha256:" + "0" * 64)


async def test_a_non_layer_media_type_is_refused() -> None:
    with pytest.raises(LayerError, match="is not a filesystem layer"):
        await read(tar_gz(FILES), "application/vnd.cncf.helm.chart.content.v1.tar+gzip")


async def test_a_download_that_breaks_midway_fails_the_layer() -> None:
    blob = gzip.compress(tar_bytes([("etc/motd", bytes(300_000))]), mtime=0)

    async def broken() -> AsyncIterator[bytes]:
        yield blob[:1000]
        raise ConnectionResetError("peer went away")

    with pytest.raises(LayerError, match="download failed: peer went away"):
        await read_layer(broken(), digest=digest_of(blob), media_type=GZIP, selector=SELECTOR)
