"""Accessibility checks that need no browser: every form control has a label, pages have one
main landmark, a skip link and a language, and the style sheet's colours meet WCAG 2.1 AA
contrast (4.5:1 for text, https://www.w3.org/TR/WCAG21/#contrast-minimum)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from aiohttp import ClientSession, web

from services.portal.app import STATIC
from tests.portal.conftest import make_user, seed_tag, team_namespace

PAGES = ("/", "/explore", "/teams", "/tokens", "/namespaces", "/profile", "/activity",
         "/admin/users", "/admin/bots", "/admin/vulndb", "/n/web", "/r/web/app",
         "/r/web/app/-/tags/1.0", "/r/web/app/-/tags/1.0/delete", "/teams/web-team")


class _Controls(HTMLParser):
    """Form controls and what labels them: ``<label for>``, an enclosing label, aria-label."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[dict[str, str | None]] = []
        self.label_for: set[str] = set()
        self.open_labels = 0
        self.tags: list[str] = []
        self.html_lang: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append(tag)
        if tag == "html":
            self.html_lang = attributes.get("lang")
        if tag == "label":
            self.open_labels += 1
            if attributes.get("for"):
                self.label_for.add(str(attributes["for"]))
        if tag in {"input", "select", "textarea"} and attributes.get("type") not in {
                "hidden", "submit", "button"}:
            self.controls.append({**attributes, "_in_label": "yes" if self.open_labels else None})

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.open_labels -= 1

    def unlabelled(self) -> list[dict[str, str | None]]:
        return [c for c in self.controls
                if not c.get("_in_label") and not c.get("aria-label")
                and c.get("id") not in self.label_for]


@pytest.fixture
async def world(app: web.Application) -> None:
    await make_user(app, "alice")
    await team_namespace(app, "admin", "web", "public", "Web *images*")
    await seed_tag(app, "web/app", "1.0")


@pytest.mark.usefixtures("world")
async def test_every_control_is_labelled_and_pages_have_landmarks(admin: ClientSession) -> None:
    for path in (*PAGES, "/login"):
        response = await admin.get(path)
        assert response.status in {200, 503}, path
        parsed = _Controls()
        parsed.feed(await response.text())
        assert parsed.unlabelled() == [], path
        assert parsed.tags.count("main") == 1, path
        assert parsed.tags.count("h1") == 1, path
        assert parsed.html_lang == "en", path
        assert 'class="skip" href="#main"' in await response.text(), path


def _luminance(hex_colour: str) -> float:
    """WCAG 2.1 relative luminance of ``#rrggbb``."""
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _variables() -> dict[str, str]:
    css = (Path(STATIC) / "portal.css").read_text()
    return dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})", css))


@pytest.mark.parametrize(("text", "background"), [
    ("fg", "bg"), ("muted", "bg"), ("accent", "bg"), ("danger", "bg"), ("ok", "bg"),
    ("fg", "panel"), ("muted", "panel"), ("accent", "panel"), ("accent-fg", "accent"),
    ("accent-fg", "danger"),
])
def test_text_colours_meet_aa_contrast(text: str, background: str) -> None:
    colours = _variables()
    assert _contrast(colours[text], colours[background]) >= 4.5


def test_the_header_and_badges_meet_aa_contrast() -> None:
    css = (Path(STATIC) / "portal.css").read_text()
    header = re.search(r"header\.top \{ background: (#[0-9a-f]{6}); color: (#[0-9a-f]{6})", css)
    assert header is not None
    assert _contrast(header[2], header[1]) >= 4.5
    protected = re.search(r"\.badge\.protected \{ color: (#[0-9a-f]{6})", css)
    assert protected is not None
    assert _contrast(protected[1], _variables()["bg"]) >= 4.5
