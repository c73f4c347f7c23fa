"""A browser's side of the portal: the form token of a page, and a signed-in session."""

from __future__ import annotations

import re

import httpx

__all__ = ["csrf_of", "portal_session"]

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "the page has no form token"
    return found[1]


async def portal_session(url: str, name: str, password: str) -> httpx.Cookies:
    """The cookies of a browser that signed in through the form at ``url``."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as browser:
        form = await browser.get("/login")
        signed_in = await browser.post("/login", data={
            "username": name, "password": password, "csrf": csrf_of(form.text), "next": "/"})
        assert signed_in.status_code == 303, signed_in.text
        return browser.cookies
