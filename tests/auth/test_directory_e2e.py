"""docker logins of directory accounts through the real registry: skopeo pushes with an LDAP
user's directory password (into the team its LDAP group maps to) and with an OIDC user's
application token, against a real slapd, a real OIDC provider and docker-registry.

skopeo runs in a thread: Dockyard shares this event loop and must answer the token requests
the registry sends skopeo to while skopeo waits.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.auth.access import IDENTITY
from services.auth.directory_app import DIRECTORY
from services.auth.policy import Principal
from services.core.config import load_config
from tests.support.dockyard import Dockyard, initialised, registry_for, running_dockyard
from tests.support.images import build_oci_image
from tests.support.oidc import OidcProviderProcess, require_oidc_provider
from tests.support.registry import (
    RegistryProcess,
    SkopeoError,
    free_port,
    require_registry_tools,
    skopeo_copy,
)
from tests.support.slapd import BASE_DN, SlapdProcess, require_slapd

pytestmark = [pytest.mark.registry]

ADMIN = Principal("admin", "user", admin=True)
LAYERS = [{"etc/os-release": b"ID=debian\n"}]
# A refusal by the registry or Dockyard, told apart from a broken setup (see test_registry_e2e).
REFUSED = re.compile(r"unauthori[sz]ed|denied|authentication required|invalid username",
                     re.IGNORECASE)


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[tuple[SlapdProcess, OidcProviderProcess]]:
    require_registry_tools()
    require_slapd()
    require_oidc_provider()
    with SlapdProcess(tmp_path / "slapd") as slapd, OidcProviderProcess() as provider:
        yield slapd, provider


@pytest.fixture
async def world(
    tmp_path: Path, peers: tuple[SlapdProcess, OidcProviderProcess]
) -> AsyncIterator[tuple[Dockyard, RegistryProcess]]:
    slapd, provider = peers
    data = tmp_path / "data"
    registry_url = f"http://127.0.0.1:{free_port()}"
    await asyncio.to_thread(initialised, data, registry_url)  # it runs its own loop
    with (data / "dockyard.toml").open("a") as toml:
        toml.write(slapd.toml() + f"""
[[ldap.groups]]
group = "cn=developers,ou=groups,{BASE_DN}"
team = "web"
role = "contributor"

[oidc.corp]
issuer = "{provider.issuer}"
client_id = "dockyard"
client_secret = "dockyard-client-secret"
""")
    config = load_config(data / "dockyard.toml", env={})
    with registry_for(config) as registry:
        async with running_dockyard(config) as dockyard:
            identity = dockyard.app[IDENTITY]
            await identity.create_team(ADMIN, "web", owner="admin")
            await identity.create_namespace(ADMIN, "web", team="web")
            yield dockyard, registry


async def test_ldap_password_and_oidc_app_token_push(
    world: tuple[Dockyard, RegistryProcess], peers: tuple[SlapdProcess, OidcProviderProcess],
    tmp_path: Path,
) -> None:
    dockyard, registry = world
    _, provider = peers
    layout = tmp_path / "oci"
    await asyncio.to_thread(build_oci_image, layout, "v1", LAYERS, salt="directory")

    async def push(target: str, creds: str) -> str:
        return await asyncio.to_thread(skopeo_copy, f"oci:{layout}:v1",
                                       f"docker://{registry.host}/{target}", creds=creds)

    # alice has never signed in: her first docker login creates her account, and the sync puts
    # her in team web (LDAP group developers), whose namespace she may now push to.
    assert (await push("web/app:v1", "alice:alice-password")).startswith("sha256:")
    assert (await push("alice/own:v1", "alice:alice-password")).startswith("sha256:")
    with pytest.raises(SkopeoError) as refused:
        await push("web/app:v2", "alice:wrong-password")
    assert REFUSED.search(str(refused.value)), refused.value

    # An OIDC user signs in through the provider once, then makes an app token for docker.
    provider.set_user("sub-olga", {"preferred_username": "olga"})
    providers = dockyard.app[DIRECTORY].providers
    url, pending = await providers.begin("corp")
    user = await providers.finish("corp", pending, await provider.authorize(url, "sub-olga"))
    # olga makes the token herself (in the portal or through the API)
    _, secret = await dockyard.app[IDENTITY].create_token(
        Principal(user.name, "user"), user.name, "docker")
    assert (await push("olga/tool:v1", f"olga:{secret}")).startswith("sha256:")
    with pytest.raises(SkopeoError) as refused:
        await push("web/app:v3", f"olga:{secret}")  # olga is not in team web
    assert REFUSED.search(str(refused.value)), refused.value
