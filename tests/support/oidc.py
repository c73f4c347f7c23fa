"""A real OpenID Connect provider for tests: PyPI ``oidc-provider-mock`` (built on Authlib).

``OidcProviderProcess`` runs ``oidc-provider-mock -p PORT`` (its own process: it imports
Authlib modules that warn about deprecations, which our warnings-as-errors tests would
refuse in-process) and waits for its discovery document. The provider has no login form to
fill: ``authorize(url, sub)`` does what a person's browser would, posting the subject to the
authorization endpoint and returning the query of the redirect back to Dockyard
(``code`` and ``state``). ``set_user(sub, claims)`` sets the claims its ID tokens carry.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from tests.support.peer import PeerProcess
from tests.support.registry import free_port

__all__ = ["OidcProviderProcess", "require_oidc_provider"]


def _binary() -> str | None:
    beside = Path(sys.executable).with_name("oidc-provider-mock")
    return str(beside) if beside.exists() else shutil.which("oidc-provider-mock")


def require_oidc_provider() -> None:
    if _binary() is None:
        pytest.skip("needs oidc-provider-mock (pip install -e '.[test]')")


class OidcProviderProcess(PeerProcess):
    name = "oidc-provider-mock"

    def __init__(self, *, token_max_age: int | None = None) -> None:
        super().__init__(Path(tempfile.mkstemp(prefix="oidc-provider-", suffix=".log")[1]))
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self._token_max_age = token_max_age

    def command(self) -> list[str]:
        binary = _binary()
        if binary is None:
            raise RuntimeError("oidc-provider-mock is not installed")
        command = [binary, "-p", str(self.port), "-H", "127.0.0.1"]
        if self._token_max_age is not None:
            command += ["-e", str(self._token_max_age)]
        return command

    def answers(self) -> bool:
        try:
            response = httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=1)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def set_user(self, sub: str, claims: dict[str, Any]) -> None:
        response = httpx.put(f"{self.issuer}/users/{sub}", json=claims, timeout=10)
        response.raise_for_status()

    async def authorize(self, url: str, sub: str) -> dict[str, str]:
        """Sign ``sub`` in at the authorization URL Dockyard made; the callback's query."""
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(url, data={"sub": sub})
        if response.status_code != 302:
            raise AssertionError(f"authorization refused: {response.status_code}"
                                 f" {response.text[:500]}")
        return dict(parse_qsl(urlsplit(response.headers["Location"]).query))
