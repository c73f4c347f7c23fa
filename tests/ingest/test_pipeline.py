"""The whole spine against the real registry: skopeo push/retag/delete → catalog and activity.

The registry runs with the registry.yml that `dockyard init` wrote, so its notifications come
to this Dockyard exactly as they would in production.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.core.config import Config
from tests.support.dockyard import (
    ADMIN_CREDS,
    Dockyard,
    initialised,
    push,
    registry_for,
    running_dockyard,
)
from tests.support.images import (
    build_cosign_signature,
    build_helm_chart,
    build_oci_artifact,
    build_oci_image,
    build_oci_index,
)
from tests.support.registry import (
    RegistryProcess,
    free_port,
    require_registry_tools,
    skopeo_copy,
    skopeo_delete,
)
from tests.support.waiting import eventually

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ADMIN = ADMIN_CREDS


@pytest.fixture
def config(tmp_path: Path) -> Config:
    require_registry_tools()
    # The admin pushes straight into team/… and library/…: the push creates the namespace.
    return initialised(tmp_path / "data", f"http://127.0.0.1:{free_port()}",
                       auth_create_namespace_on_push="true")


@pytest.fixture
def registry(config: Config) -> Iterator[RegistryProcess]:
    with registry_for(config) as process:
        yield process


@pytest.fixture
async def dockyard(config: Config, registry: RegistryProcess) -> AsyncIterator[Dockyard]:
    async with running_dockyard(config) as running:
        yield running


async def tags(dockyard: Dockyard, repository: str) -> dict[str, dict[str, Any]]:
    response = await dockyard.client.get("/api/v1/tags", params={"repository": repository})
    if response.status_code == 404:
        return {}
    response.raise_for_status()
    return {tag["name"]: tag for tag in response.json()["items"]}


async def activities(dockyard: Dockyard, **filters: str) -> list[dict[str, Any]]:
    response = await dockyard.client.get("/api/v1/activities", params=filters)
    response.raise_for_status()
    return list(reversed(response.json()["items"]))  # oldest first reads like a story


@pytest.mark.registry
async def test_push_retag_move_and_delete_show_exactly_what_happened(
    dockyard: Dockyard, registry: RegistryProcess, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    first = build_oci_image(layout, "one", [{"etc/os-release": b"ID=debian\n"}], salt="one")
    second = build_oci_image(layout, "two", [{"etc/os-release": b"ID=alpine\n"}], salt="two")

    assert await push(layout, "one", registry, "team/app:1.0") == first
    pushed = await eventually(lambda: tags(dockyard, "team/app"), lambda t: "1.0" in t,
                              what="team/app:1.0 in the tags API")
    tag = pushed["1.0"]
    assert (tag["digest"], tag["media_type"], tag["kind"]) == (first, OCI_MANIFEST, "image")
    assert tag["size"] > 0
    assert tag["platforms"] == []
    assert tag["pull_count"] == 0

    # Retag by copying registry to registry: same digest under a second name.
    await asyncio.to_thread(skopeo_copy, f"docker://{registry.host}/team/app:1.0",
                            f"docker://{registry.host}/team/app:stable", creds=ADMIN)
    both = await eventually(lambda: tags(dockyard, "team/app"), lambda t: "stable" in t)
    assert both["stable"]["digest"] == first

    # Move 1.0 to another image.
    await push(layout, "two", registry, "team/app:1.0")
    moved = await eventually(lambda: tags(dockyard, "team/app"),
                             lambda t: t["1.0"]["digest"] == second)
    assert moved["stable"]["digest"] == first

    # Delete by digest: the manifest goes with every tag on it (here: stable).
    await asyncio.to_thread(skopeo_delete, f"docker://{registry.host}/team/app:stable",
                            creds=ADMIN)
    remaining = await eventually(lambda: tags(dockyard, "team/app"),
                                 lambda t: "stable" not in t)
    assert set(remaining) == {"1.0"}

    story = await eventually(lambda: activities(dockyard, repository="team/app"),
                             lambda a: any(e["type"] == "tag.deleted" for e in a))
    assert [(e["type"], e["tag"], e["digest"]) for e in story] == [
        ("tag.pushed", "1.0", first),
        ("tag.pushed", "stable", first),
        ("tag.pushed", "1.0", second),
        ("manifest.deleted", None, first),
        ("tag.deleted", "stable", None),
    ]
    assert all(e["namespace"] == "team" and e["user_agent"] for e in story)


@pytest.mark.registry
async def test_docker_v2_image_and_multi_arch_index(
    dockyard: Dockyard, registry: RegistryProcess, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    build_oci_image(layout, "plain", [{"bin/app": b"\x7fELF"}], salt="v2s2")
    build_oci_index(layout, "multi", salt="multi")

    await push(layout, "plain", registry, "team/legacy:1", format="v2s2")
    index = await push(layout, "multi", registry, "team/multi:latest", all=True)

    legacy = await eventually(lambda: tags(dockyard, "team/legacy"), lambda t: "1" in t)
    assert legacy["1"]["media_type"] == DOCKER_MANIFEST
    assert legacy["1"]["kind"] == "image"

    multi = (await eventually(lambda: tags(dockyard, "team/multi"), lambda t: "latest" in t))
    latest = multi["latest"]
    assert (latest["digest"], latest["media_type"], latest["kind"]) == (index, OCI_INDEX, "index")
    platforms = {(p["os"], p["architecture"], p["variant"]) for p in latest["platforms"]}
    assert platforms == {("linux", "amd64", None), ("linux", "arm64", "v8")}
    assert all(p["size"] > 0 for p in latest["platforms"])
    assert latest["size"] == sum(p["size"] for p in latest["platforms"])

    repositories = (await dockyard.client.get("/api/v1/repositories")).json()["items"]
    assert {r["name"]: r["tag_count"] for r in repositories} == {"team/legacy": 1, "team/multi": 1}


@pytest.mark.registry
async def test_pulls_are_counted_per_tag(
    dockyard: Dockyard, registry: RegistryProcess, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    build_oci_image(layout, "x", [{"a": b"a"}], salt="pull")
    await push(layout, "x", registry, "team/pulled:1")
    await eventually(lambda: tags(dockyard, "team/pulled"), lambda t: "1" in t)

    await asyncio.to_thread(skopeo_copy, f"docker://{registry.host}/team/pulled:1",
                            f"oci:{tmp_path / 'out'}:1", creds=ADMIN)
    pulled = await eventually(lambda: tags(dockyard, "team/pulled"),
                              lambda t: t["1"]["pull_count"] == 1)
    assert pulled["1"]["last_pulled_at"] is not None
    # Pulls are not activity unless [activity] record_pulls is on.
    registry_activity = [a["type"] for a in await activities(dockyard)
                         if a["repository"] is not None]
    assert registry_activity == ["tag.pushed"]


@pytest.mark.registry
async def test_artifact_types_and_what_refers_to_an_image(
    dockyard: Dockyard, registry: RegistryProcess, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    image = build_oci_image(layout, "1.0", [{"app": b"app"}], salt="signed")
    build_helm_chart(layout, "0.1.0", salt="chart")
    build_cosign_signature(layout, image, salt="sig")
    signature_tag = image.replace("sha256:", "sha256-") + ".sig"
    sbom = build_oci_artifact(layout, "sbom", [("application/spdx+json", b"{}")],
                              artifact_type="application/spdx+json", subject=image)

    await push(layout, "1.0", registry, "team/app:1.0")
    await push(layout, "0.1.0", registry, "charts/demo:0.1.0")
    await push(layout, signature_tag, registry, f"team/app:{signature_tag}")
    await push(layout, "sbom", registry, "team/app:sbom")

    chart = await eventually(lambda: tags(dockyard, "charts/demo"), lambda t: "0.1.0" in t)
    assert chart["0.1.0"]["kind"] == "helm_chart"
    assert chart["0.1.0"]["artifact_type"] == "application/vnd.cncf.helm.config.v1+json"

    app = await eventually(lambda: tags(dockyard, "team/app"),
                           lambda t: {"1.0", "sbom", signature_tag} <= set(t))
    assert app[signature_tag]["kind"] == "signature"
    assert app["sbom"]["kind"] == "sbom"
    assert app["sbom"]["subject"] == image
    referrers = {(r["kind"], r["digest"]) for r in app["1.0"]["referrers"]}
    assert referrers == {("signature", app[signature_tag]["digest"]), ("sbom", sbom)}
