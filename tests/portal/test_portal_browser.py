"""The portal as a person uses it: Debian's chromium, driven by Playwright, against a running
Dockyard and a real registry (the registry.yml ``dockyard init`` wrote, so it demands Dockyard's
tokens and notifies Dockyard of every push and delete).

One story per test, each step through the browser; skopeo pushes and pulls in a thread, since
Dockyard shares this event loop and must answer the token requests skopeo's registry sends.

With ``DOCKYARD_SCREENSHOTS=DIR`` the tests also save screenshots of the main pages there:
``make screenshots`` regenerates docs/screenshots/ that way.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from services.auth.access import IDENTITY
from services.auth.policy import Principal
from services.core.config import Config
from services.core.registry import ManifestNotFound
from services.core.web import REGISTRY
from tests.support.dockyard import (
    ADMIN_PASSWORD,
    Dockyard,
    initialised,
    registry_for,
    running_dockyard,
)
from tests.support.images import build_oci_image
from tests.support.registry import (
    RegistryProcess,
    SkopeoError,
    free_port,
    require_registry_tools,
    skopeo_copy,
)
from tests.support.waiting import eventually

pytestmark = [pytest.mark.registry, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ADMIN = Principal("admin", "user", admin=True)
PASSWORD = "browser-password-1"
LAYERS = [{"etc/os-release": b"ID=debian\nVERSION_ID=12\n"}, {"srv/app/main.py": b"print(1)\n"}]
SCREENSHOTS = os.environ.get("DOCKYARD_SCREENSHOTS")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    require_registry_tools()
    if not Path(CHROMIUM).is_file():
        pytest.skip("Debian chromium is not installed: run make test, which installs it")
    data_dir = tmp_path_factory.mktemp("portal-browser") / "data"
    return initialised(data_dir, f"http://127.0.0.1:{free_port()}")


@pytest.fixture(scope="module")
def registry(config: Config) -> Iterator[RegistryProcess]:
    with registry_for(config) as process:
        yield process


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("layout") / "oci"
    for tag in ("v1", "v2"):
        build_oci_image(root, tag, LAYERS, salt=tag)
    return root


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def dockyard(config: Config, registry: RegistryProcess) -> AsyncIterator[Dockyard]:
    async with running_dockyard(config) as running:
        identity = running.app[IDENTITY]
        for name in ("alice", "bob"):
            await identity.create_user(ADMIN, name, email=f"{name}@example.test",
                                       password=PASSWORD)
        await identity.create_team(ADMIN, "web", owner="alice", description="The web team")
        await identity.create_namespace(ADMIN, "web", team="web", visibility="protected",
                                        description="Images of **the web team**.")
        yield running


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest_asyncio.fixture(loop_scope="module")
async def context(chromium: Browser, dockyard: Dockyard) -> AsyncIterator[BrowserContext]:
    context = await chromium.new_context(base_url=dockyard.url,
                                         viewport={"width": 1280, "height": 800})
    yield context
    await context.close()


async def sign_in(page: Page, username: str, password: str = PASSWORD) -> None:
    await page.goto("/login")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name=f"Welcome, {username}")).to_be_visible()


async def shoot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


async def push(registry: RegistryProcess, layout: Path, source: str, target: str,
               creds: str) -> str:
    return await asyncio.to_thread(skopeo_copy, f"oci:{layout}:{source}",
                                   f"docker://{registry.host}/{target}", creds=creds)


async def scan_report_and_sbom(page: Page) -> None:
    """The scanner picks the pushed manifest up; its report and SBOM show on the tag page."""
    async def scanned() -> int:
        await page.reload()
        return await page.get_by_role("link", name="Download SBOM (CycloneDX)").count()

    await eventually(scanned, lambda count: count == 1, timeout=60, what="the scan report")
    await expect(page.locator("#vulnerabilities ~ p").first).to_contain_text("debian 12")
    async with page.expect_download() as downloading:
        await page.get_by_role("link", name="Download SBOM (CycloneDX)").click()
    download = await downloading.value
    sbom = json.loads(Path(await download.path()).read_text())
    assert sbom["bomFormat"] == "CycloneDX"


async def token_for_skopeo(page: Page, registry: RegistryProcess, digest: str,
                           tmp_path: Path) -> None:
    """An application token, shown once, works with skopeo."""
    await page.goto("/tokens")
    await page.get_by_label("Label").fill("laptop")
    await page.get_by_role("button", name="Create token").click()
    secret = (await page.locator("#new-token").inner_text()).strip()
    assert secret.startswith("dyat_")
    await shoot(page, "tokens")
    pulled = await asyncio.to_thread(skopeo_copy, f"docker://{registry.host}/web/app:2.0",
                                     f"oci:{tmp_path / 'pulled'}:2.0", creds=f"alice:{secret}")
    assert pulled == digest
    # Reloading neither posts the form again (no second token) nor shows the secret again.
    await page.reload()
    await expect(page.locator("#new-token")).to_have_count(0)
    await expect(page.locator("tbody tr", has_text="laptop")).to_have_count(1)


async def test_sign_in_push_find_inspect_token_and_delete(
        context: BrowserContext, dockyard: Dockyard, registry: RegistryProcess, layout: Path,
        tmp_path: Path) -> None:
    page = await context.new_page()
    await sign_in(page, "alice")

    first = await push(registry, layout, "v1", "web/app:1.0", f"alice:{PASSWORD}")
    await push(registry, layout, "v1", "web/app:latest", f"alice:{PASSWORD}")
    second = await push(registry, layout, "v2", "web/app:2.0", f"alice:{PASSWORD}")

    # Find it by typing: results arrive without a page load, once the indexers have it.
    await page.goto("/explore")

    async def found() -> int:
        await page.get_by_label("Search repositories").fill("")
        await page.get_by_label("Search repositories").fill("app")
        await page.wait_for_timeout(400)
        return await page.locator("#results a", has_text="web/app").count()

    await eventually(found, lambda count: count == 1, what="web/app in the instant results")
    await shoot(page, "explore")
    await page.locator("#results a", has_text="web/app").click()
    await expect(page.get_by_role("heading", name="web/app")).to_be_visible()

    async def tags_listed() -> int:
        await page.reload()
        return await page.locator("table.tags tbody tr").count()

    await eventually(tags_listed, lambda count: count == 3, what="three tags listed")
    await expect(page.locator("table.tags")).to_contain_text(f"docker pull {registry.host}"
                                                             "/web/app:1.0")
    await shoot(page, "repository")

    # The tag page reads the manifest from the registry: its layers.
    await page.get_by_role("link", name="1.0", exact=True).click()
    await expect(page.get_by_role("heading", name="web/app:1.0")).to_be_visible()
    await expect(page.locator("dl.facts")).to_contain_text(first)
    await expect(page.get_by_role("heading", name="Layers")).to_be_visible()
    layers = page.locator("h2:has-text('Layers') + .table-scroll tbody tr")
    assert await layers.count() == len(LAYERS)

    await scan_report_and_sbom(page)
    await shoot(page, "tag")

    await token_for_skopeo(page, registry, second, tmp_path)

    # Deleting 1.0 deletes its manifest, and latest with it: the page says so first.
    await page.goto("/r/web/app")
    await page.get_by_role("link", name="Delete 1.0").click()
    await expect(page.locator(".warning")).to_contain_text("latest")
    await shoot(page, "delete-tag")
    await page.get_by_role("button", name="Delete 2 tags").click()
    await expect(page.locator(".notice")).to_contain_text("Deleted")
    with pytest.raises(ManifestNotFound):
        await dockyard.app[REGISTRY].get_manifest("web/app", first)
    await eventually(tags_listed, lambda count: count == 1, what="only 2.0 left")
    await expect(page.locator("table.tags")).to_contain_text("2.0")


async def test_making_a_namespace_private_hides_it_from_others(
        context: BrowserContext, chromium: Browser, dockyard: Dockyard,
        registry: RegistryProcess, layout: Path, tmp_path: Path) -> None:
    owner = await context.new_page()
    await sign_in(owner, "alice")
    # The dashboard follows activity live (server-sent events): the push shows up unasked.
    await expect(owner.locator("#live-activity")).not_to_contain_text("web/site:1")
    await push(registry, layout, "v2", "web/site:1", f"alice:{PASSWORD}")
    await expect(owner.locator("#live-activity li").first).to_contain_text("web/site:1",
                                                                          timeout=20_000)
    await shoot(owner, "dashboard")

    bob_context = await chromium.new_context(base_url=dockyard.url)
    try:
        bob = await bob_context.new_page()
        await sign_in(bob, "bob")
        await bob.goto("/n/web")  # protected: anyone signed in may look
        await expect(bob.get_by_role("heading", name="web")).to_be_visible()
        await expect(bob.locator(".markdown strong")).to_have_text("the web team")

        await owner.goto("/n/web")
        await shoot(owner, "namespace")
        await owner.get_by_label("Visibility").select_option("private")
        await owner.get_by_role("button", name="Save").click()
        await expect(owner.locator(".notice")).to_have_text("Namespace saved.")
        await expect(owner.locator("h1 .badge")).to_have_text("private")

        response = await bob.goto("/n/web")
        assert response is not None
        assert response.status == 404
        await expect(bob.get_by_role("heading", name="404 · Not found")).to_be_visible()
        await bob.goto("/explore?q=web")
        await expect(bob.locator("#results")).not_to_contain_text("web/site")
        with pytest.raises(SkopeoError):
            await asyncio.to_thread(skopeo_copy, f"docker://{registry.host}/web/site:1",
                                    f"oci:{tmp_path / 'bob'}:1", creds=f"bob:{PASSWORD}")
    finally:
        await bob_context.close()

    admin = await chromium.new_context(base_url=dockyard.url)
    try:
        page = await admin.new_page()
        await sign_in(page, "admin", ADMIN_PASSWORD)
        for path, name in (("/admin/users", "admin-users"), ("/activity", "activity"),
                           ("/admin/health", "admin-health")):
            await page.goto(path)
            await shoot(page, name)
        await page.goto("/activity")
        await expect(page.locator("ul.activity")).to_contain_text("web/site:1")
    finally:
        await admin.close()

    if SCREENSHOTS:
        anonymous = await chromium.new_context(base_url=dockyard.url)
        page = await anonymous.new_page()
        await page.goto("/login")
        await shoot(page, "sign-in")
        await anonymous.close()


async def test_keyboard_and_a_phone_sized_screen(
        chromium: Browser, dockyard: Dockyard, registry: RegistryProcess, layout: Path) -> None:
    await push(registry, layout, "v1", "alice/tool:1", f"alice:{PASSWORD}")
    phone = await chromium.new_context(base_url=dockyard.url,
                                       viewport={"width": 375, "height": 740})
    try:
        page = await phone.new_page()
        # Keyboard only: the first Tab reaches the skip link, which moves focus to the content.
        await page.goto("/explore")
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
        await page.keyboard.press("Enter")
        assert await page.evaluate("document.activeElement.id") == "main"
        await page.goto("/login")
        await expect(page.get_by_label("Username")).to_be_focused()  # autofocus
        await page.keyboard.type("alice")
        await page.keyboard.press("Tab")
        await page.keyboard.type(PASSWORD)
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("heading", name="Welcome, alice")).to_be_visible()

        async def catalogued() -> int:
            await page.goto("/r/alice/tool")
            return await page.locator("table.tags tbody tr").count()

        await eventually(catalogued, lambda count: count == 1, what="alice/tool:1 listed")
        # Nothing wider than the screen but the tag table, which scrolls in its own box.
        for path in ("/", "/r/alice/tool", "/r/alice/tool/-/tags/1", "/tokens", "/explore"):
            await page.goto(path)
            width = await page.evaluate("document.documentElement.scrollWidth")
            wide = await page.evaluate("""() => [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > 376)
                .slice(0, 5).map(e => e.tagName + '.' + e.className)""")
            assert width <= 375, f"{path} is {width}px wide on a 375px screen: {wide}"
        if SCREENSHOTS:
            await page.goto("/r/alice/tool")
            await shoot(page, "repository-phone")
    finally:
        await phone.close()
