"""Search through the whole pipeline: skopeo pushes to the real registry, the registry notifies
Dockyard, the ``search`` consumer indexes (fetching manifests from the registry), the API finds;
a delete takes the tags out again; ``dockyard search reindex`` rebuilds the same answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.cli import main
from services.core.config import Config
from tests.support.dockyard import (
    ADMIN_CREDS,
    Dockyard,
    initialised,
    push,
    registry_for,
    running_dockyard,
)
from tests.support.images import build_helm_chart, build_oci_image, build_oci_index
from tests.support.registry import (
    RegistryProcess,
    free_port,
    require_registry_tools,
    skopeo_delete,
)
from tests.support.waiting import eventually

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


async def found(dockyard: Dockyard, **params: str) -> list[dict[str, Any]]:
    response = await dockyard.client.get("/api/v1/search", params=params)
    response.raise_for_status()
    items: list[dict[str, Any]] = response.json()["items"]
    return items


@pytest.mark.registry
async def test_pushed_images_are_found_and_deleted_ones_are_gone(
    dockyard: Dockyard, registry: RegistryProcess, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    image = build_oci_image(layout, "one", [{"etc/os-release": b"ID=debian\n"}], salt="s1")
    index = build_oci_index(layout, "multi", salt="s2")
    build_helm_chart(layout, "chart", salt="s3")
    await push(layout, "one", registry, "library/nginx:1.25")
    await push(layout, "one", registry, "library/nginx:stable")
    await push(layout, "multi", registry, "team/nginx-proxy:2", all=True)
    await push(layout, "chart", registry, "team/charts:0.1.0")

    repositories = await eventually(lambda: found(dockyard, q="ngin"),
                                    lambda items: len(items) == 2, what="both repositories")
    # Their order depends on pulls, and the scanner pulls what it scans: the contract tests
    # pin the ranking down.
    assert {(r["repository"], r["match"]) for r in repositories} == {
        ("team/nginx-proxy", "prefix"), ("library/nginx", "prefix")}
    (tag,) = await found(dockyard, q="nginx:1.2")
    assert (tag["repository"], tag["tag"], tag["digest"]) == ("library/nginx", "1.25", image)
    assert tag["kind"] == "image"
    assert tag["pushed_by"] == "admin"
    (multi,) = await eventually(lambda: found(dockyard, q=index[:15]), lambda items: items)
    assert (multi["tag"], multi["kind"]) == ("2", "index")
    assert {(p["os"], p["architecture"]) for p in multi["platforms"]} == {
        ("linux", "amd64"), ("linux", "arm64")}
    charts = await eventually(
        lambda: found(dockyard, q=":0.1", artifact_type="helm_chart"), lambda items: items)
    assert [c["repository"] for c in charts] == ["team/charts"]

    # Deleting the manifest removes both tags on it; the registry sends the deletes.
    await asyncio.to_thread(skopeo_delete, f"docker://{registry.host}/library/nginx:stable",
                            creds=ADMIN)
    await eventually(lambda: found(dockyard, q="library/nginx:"), lambda items: items == [],
                     what="the deleted tags gone from search")
    assert await found(dockyard, q=image) == []
    assert [r["repository"] for r in await found(dockyard, q="ngin")] == ["team/nginx-proxy"]

    # A rebuild from the catalog finds the same (pull counts may move meanwhile: the scanner
    # pulls what it scans, so they are left out).
    def what(items: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
        return {(i["type"], i["match"], i["repository"], i["tag"], i["digest"], i.get("kind"))
                for i in items}

    queries = ("ngin", "team", ":2", index[:20])
    before = {q: what(await found(dockyard, q=q)) for q in queries}
    code = await asyncio.to_thread(
        main, ["search", "reindex", "--config", str(dockyard.data_dir / "dockyard.toml")])
    assert code == 0
    assert {q: what(await found(dockyard, q=q)) for q in queries} == before
    assert all(before.values())
