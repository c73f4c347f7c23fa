"""Inventory over layers: the final view's packages, each attributed to its introducing layer."""

from __future__ import annotations

from services.scanner.detectors.base import LayerFile
from services.scanner.inventory import build_inventory
from services.scanner.layers import LayerContents
from services.scanner.models import Distribution
from tests.scanner.status_data import DEBIAN_OS_RELEASE, stanza, status

STATUS = "var/lib/dpkg/status"
SITE = "usr/lib/python3/dist-packages"
METADATA = f"{SITE}/requests-2.31.0.dist-info/METADATA"


def layer(digest: str, files: dict[str, bytes], removed=(), opaque=()) -> LayerContents:
    contents = LayerContents(digest, removed=set(removed), opaque=set(opaque))
    contents.files = {p: LayerFile(p, digest, len(c), c) for p, c in files.items()}
    return contents


def summary(inventory) -> list[tuple[str, str, str]]:
    return sorted((p.name, p.version, p.layer) for p in inventory.packages)


def test_packages_carry_the_layer_that_introduced_them_and_removed_ones_are_gone() -> None:
    base = layer("L1", {
        "etc/os-release": DEBIAN_OS_RELEASE,
        STATUS: status(stanza("base-files"), stanza("bash"), stanza("zlib1g")),
        METADATA: b"Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\n",
    })
    add_ssl = layer("L2", {STATUS: status(stanza("base-files"), stanza("bash"),
                                          stanza("zlib1g"), stanza("libssl3"))})
    # bash purged, zlib1g upgraded, requests deleted through a whiteout of its dist-info.
    change = layer("L3", {
        STATUS: status(stanza("base-files"), stanza("zlib1g", Version="1:1.2.13.dfsg-2"),
                       stanza("libssl3")),
    }, removed=[f"{SITE}/requests-2.31.0.dist-info"])
    unrelated = layer("L4", {"etc/motd": b"hi"})
    inventory = build_inventory([base, add_ssl, change, unrelated])
    assert inventory.distribution == Distribution(
        "debian", "12", "Debian GNU/Linux 12 (bookworm)", "bookworm")
    assert summary(inventory) == [
        ("base-files", "12.4+deb12u11", "L1"),
        ("libssl3", "3.0.19-1~deb12u2", "L2"),
        ("zlib1g", "1:1.2.13.dfsg-2", "L3"),
    ]
    assert inventory.detectors["dpkg"] == "1"
    assert inventory.warnings == ()


def test_a_package_removed_then_reinstalled_counts_from_the_reinstalling_layer() -> None:
    inventory = build_inventory([
        layer("L1", {STATUS: status(stanza("bash"))}),
        layer("L2", {}, removed=["var/lib/dpkg"]),
        layer("L3", {STATUS: status(stanza("bash"))}),
    ])
    assert summary(inventory) == [("bash", "5.2.15-2+b8", "L3")]


def test_an_opaque_directory_hides_lower_packages() -> None:
    inventory = build_inventory([
        layer("L1", {METADATA: b"Name: requests\nVersion: 2.31.0\n"}),
        layer("L2", {f"{SITE}/six-1.16.0.egg-info": b"Name: six\nVersion: 1.16.0\n"},
              opaque=[SITE]),
    ])
    assert summary(inventory) == [("six", "1.16.0", "L2")]


def test_layer_and_detector_warnings_are_kept() -> None:
    top = layer("L1", {STATUS: b""})
    top.files["var/lib/rpm/Packages"] = LayerFile("var/lib/rpm/Packages", "L1", 10, b"x")
    top.warnings.append("layer L1: skipped 1 entries with absolute names (first: '/x')")
    inventory = build_inventory([top])
    assert inventory.packages == ()
    assert inventory.warnings == (
        "layer L1: skipped 1 entries with absolute names (first: '/x')",
        ("rpm: var/lib/rpm/Packages: Berkeley DB rpmdb (RHEL 8 and older) is not supported;"
         " its packages are not listed"),
    )
