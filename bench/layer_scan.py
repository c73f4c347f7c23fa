"""Layer scan throughput and memory: the scanner's layer reader against a bare tar walk.

What it measures
    A gzip layer is generated once in /tmp (kept for later runs): ``--files`` files under
    usr/, node_modules/ and a dpkg status, each of random-ish content that gzip shrinks about
    3x, for ``--mib`` MiB of tar. Both sides read the same file from disk in 1 MiB chunks.

    - scanner: ``services.scanner.layers.read_layer`` with every detector's selector, fed by an
      async generator (as the registry response feeds it), tar work in a worker thread, the
      sha256 of the blob verified, wanted files kept;
    - baseline: a plain loop in this thread that decompresses with GzipFile and walks the
      headers with tarfile's stream mode (``for member in tar: pass``), nothing else.

    Runs alternate (baseline, scanner, …) ``--runs`` times; the figure is MiB of tar per second.
    Then a ``--big-mib`` layer (over 1 GiB of tar by default) is scanned in a child process
    that imports the scanner only and reports its own peak RSS after the imports and after
    the scan (VmHWM; ``resource.getrusage`` is printed too, ``child_peak_rss`` says why it
    reads high).

Target
    scanner ≥ 0.7 x baseline on a ≥ 200 MiB layer; peak RSS ≤ 150 MB on a 1 GiB layer.

    .venv/bin/python bench/layer_scan.py [--mib 256] [--big-mib 1100] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import io
import json
import random
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import harness

from services.scanner.detectors import DETECTORS
from services.scanner.layers import Selector, read_layer

SCRATCH = Path("/tmp/dockyard-bench-layers")  # noqa: S108 - a cache the brief puts in /tmp
CHUNK = 1 << 20
MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


def generate(path: Path, mib: int, files: int) -> None:
    """A gzip tar of about ``mib`` MiB, written once; content compresses about 3x."""
    if path.exists():
        return
    rng = random.Random(mib)
    # Blocks of random bytes mixed with repeated text, so gzip works as on real binaries.
    pool = [rng.randbytes(4096) + b"lorem ipsum dolor sit amet " * 300 for _ in range(64)]
    size_each = mib * (1 << 20) // files
    tmp = path.with_suffix(".part")
    with tmp.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6,
                                               mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        status = b"".join(
            b"Package: pkg%d\nStatus: install ok installed\nVersion: 1.%d\n\n" % (n, n)
            for n in range(500))
        _add(tar, "var/lib/dpkg/status", status)
        for n in range(files):
            if n % 50 == 0:
                name = f"app/node_modules/mod{n}/package.json"
                body = json.dumps({"name": f"mod{n}", "version": "1.0.0"}).encode()
            else:
                name = f"usr/share/data/d{n % 97}/file{n}.bin"
                parts = [pool[rng.randrange(64)] for _ in range(size_each // len(pool[0]) + 1)]
                body = b"".join(parts)[:size_each]
            _add(tar, name, body)
    tmp.rename(path)


def _add(tar: tarfile.TarFile, name: str, body: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(body)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(body))


def digest_of(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()


async def chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def baseline(path: Path) -> int:
    """Decompress and walk the tar headers: the least any layer reader must do."""
    members = 0
    with path.open("rb") as raw, gzip.GzipFile(fileobj=raw) as gz, \
            tarfile.open(fileobj=gz, mode="r|") as tar:
        for _ in tar:
            members += 1
    return members


async def scan(path: Path, digest: str) -> int:
    contents = await read_layer(chunks(path), digest=digest, media_type=MEDIA_TYPE,
                                selector=Selector(DETECTORS))
    return len(contents.files)


def tar_mib(path: Path) -> float:
    with path.open("rb") as raw, gzip.GzipFile(fileobj=raw) as gz:
        total = 0
        while block := gz.read(CHUNK * 4):
            total += len(block)
    return total / (1 << 20)


# The child imports the scanner's modules only, so its RSS is the scanner's, not the harness'.
_CHILD = """
import asyncio, json, resource, sys
sys.path.insert(0, sys.argv[1])
from services.scanner.detectors import DETECTORS
from services.scanner.layers import Selector, read_layer

async def chunks(path):
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk

async def scan(path, digest):
    contents = await read_layer(chunks(path), digest=digest, media_type=sys.argv[4],
                                selector=Selector(DETECTORS))
    return len(contents.files)

def hwm():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

before = hwm()
kept = asyncio.run(scan(sys.argv[2], sys.argv[3]))
print(json.dumps([before, hwm(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, kept]))
"""


def child_peak_rss(path: Path, digest: str) -> tuple[float, float, float, int]:
    """From a fresh process: peak RSS in MB after imports and after the scan (VmHWM), the
    scan's ``getrusage`` peak, and the files kept.

    ``ru_maxrss`` of a child carries over the peak of the process that forked it (Linux keeps
    ``signal->maxrss`` across exec), so it reads at least this benchmark's own size; VmHWM of
    /proc/self/status is the child's own high-water mark.
    """
    output = subprocess.run(
        [sys.executable, "-c", _CHILD, str(harness.REPO), str(path), digest, MEDIA_TYPE],
        check=True, capture_output=True, text=True,
    ).stdout
    before, after, rusage, kept = json.loads(output)
    return before / 1024, after / 1024, rusage / 1024, kept  # both are in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--big-mib", type=int, default=1100)
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    SCRATCH.mkdir(exist_ok=True)
    layer = SCRATCH / f"layer-{args.mib}m-{args.files}.tar.gz"
    big = SCRATCH / f"layer-{args.big_mib}m-{args.files}.tar.gz"
    print(f"generating layers in {SCRATCH} (once) …", flush=True)
    generate(layer, args.mib, args.files)
    generate(big, args.big_mib, args.files)
    digest = digest_of(layer)
    size = tar_mib(layer)
    print(f"layer: {layer.stat().st_size / (1 << 20):.0f} MiB gzip, {size:.0f} MiB tar,"
          f" {args.files} files; {harness.describe_machine(SCRATCH)}")

    rows, ratios = [], []
    for run in range(1, args.runs + 1):
        started = time.perf_counter()
        baseline(layer)
        base_s = time.perf_counter() - started
        started = time.perf_counter()
        kept = asyncio.run(scan(layer, digest))
        scan_s = time.perf_counter() - started
        ratios.append(base_s / scan_s)
        rows.append([f"run {run}", f"{size / base_s:.0f}", f"{size / scan_s:.0f}",
                     f"{base_s / scan_s:.2f}", kept])
    harness.print_table(["", "baseline MiB/s", "scanner MiB/s", "ratio", "files kept"], rows)
    # The median: the machine is shared, so single runs swing both ways.
    middle = statistics.median(ratios)
    print(f"throughput ratio: median {middle:.2f} (runs: {', '.join(f'{r:.2f}' for r in ratios)});"
          f" target ≥ 0.70: {'met' if middle >= 0.7 else 'MISSED'}")

    big_digest = digest_of(big)
    before, peak, rusage, kept = child_peak_rss(big, big_digest)
    print(f"big layer ({tar_mib(big):.0f} MiB tar): peak RSS {before:.0f} MB after imports,"
          f" {peak:.0f} MB after the scan ({kept} files kept; getrusage says {rusage:.0f} MB,"
          f" which includes the forking parent's peak); target ≤ 150 MB:"
          f" {'met' if peak <= 150 else 'MISSED'}")


if __name__ == "__main__":
    main()
