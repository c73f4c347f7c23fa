"""``dockyard init``: a data directory with everything a registry and Dockyard need.

Writes ``dockyard.toml`` (mode 0600: it holds the webhook secret), the token signing key and
certificate, ``registry.yml`` for the stock registry, and the admin account.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomli_w
import yaml

from services.auth.adapters.sqlite import SqliteAuthStore
from services.auth.app import AUTH_DB, keyring
from services.auth.credentials import ends_credentials
from services.auth.models import User
from services.auth.passwords import generate_password, hash_password
from services.core.config import Config

__all__ = ["ADMIN_USER", "InitError", "InitResult", "initialise"]

ADMIN_USER = "admin"
CONFIG_FILE = "dockyard.toml"
REGISTRY_FILE = "registry.yml"


class InitError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class InitResult:
    config_path: Path
    admin_password: str | None  # set when generated: shown once, stored nowhere


def initialise(
    data_dir: Path,
    *,
    registry_url: str = "http://127.0.0.1:5000",
    listen: str = "127.0.0.1:5050",
    external_url: str | None = None,
    admin_password: str | None = None,
    force: bool = False,
) -> InitResult:
    config_path = data_dir / CONFIG_FILE
    if config_path.exists() and not force:
        raise InitError(f"{config_path} exists; pass --force to overwrite it (keys, secret and "
                        "admin password are made anew; images and history are kept)")
    registry_address = _host_port(registry_url, "--registry-url")
    if external_url is not None:
        _check_url(external_url, "--external-url")
    settings: dict[str, Any] = {
        "server": {"listen": listen, "external_url": external_url or f"http://{listen}"},
        "registry": {"url": registry_url.rstrip("/"), "config": REGISTRY_FILE},
        "webhook": {"secret": secrets.token_urlsafe(32)},
        # One secret per purpose: the webhook's is shared with the registry, this one is not.
        "auth": {"login_state_secret": secrets.token_urlsafe(32)},
    }
    # The environment is not applied here: init writes what it was given, and DOCKYARD_* variables
    # override it when Dockyard runs.
    config = Config.from_mapping({**settings, "server": {**settings["server"],
                                                          "data_dir": str(data_dir.resolve())}},
                                 env={})
    data_dir.mkdir(parents=True, exist_ok=True)  # only once the options are known to be good
    ring = keyring(config)
    ring.clear()  # --force: a new key replaces the old ones, which are trusted no more
    ring.rotate(config.auth.algorithm, common_name=config.auth.issuer)
    _write_private(config_path, tomli_w.dumps(settings))
    _write_private(data_dir / REGISTRY_FILE, yaml.safe_dump(
        registry_config(config, registry_address), sort_keys=False))
    generated = admin_password is None
    password = admin_password or generate_password()
    asyncio.run(_create_admin(config.path(AUTH_DB), password))
    return InitResult(config_path, password if generated else None)


def registry_config(config: Config, address: str) -> dict[str, Any]:
    """A registry 2.8 configuration (docs/configuration.md) that reports to this Dockyard."""
    data_dir = config.server.data_dir
    return {
        "version": 0.1,
        "log": {"level": "info", "fields": {"service": "registry"}},
        "storage": {
            "filesystem": {"rootdirectory": str(data_dir / "registry")},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": {
            "addr": address,
            "secret": secrets.token_urlsafe(32),
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
        # Token authentication (distribution docs/configuration.md#token): clients get tokens
        # from this Dockyard, the registry verifies them with the certificates in the bundle.
        "auth": {"token": {
            "realm": config.server.external_url.rstrip("/") + "/v2/token",
            "service": config.auth.service,
            "issuer": config.auth.issuer,
            "rootcertbundle": str(config.path(config.auth.certificate_bundle)),
        }},
        "notifications": {
            "events": {"includereferences": True},
            "endpoints": [{
                "name": "dockyard",
                "url": config.server.external_url.rstrip("/") + "/v2/webhooks/events",
                "headers": {"Authorization": [f"Bearer {config.webhook.secret}"]},
                "timeout": "5s",
                "threshold": 5,
                "backoff": "1s",
                # Blob events change nothing Dockyard keeps; not sending them halves the traffic.
                "ignoredmediatypes": ["application/octet-stream"],
            }],
        },
    }


def _host_port(url: str, option: str) -> str:
    """``HOST:PORT`` for the registry's ``http.addr`` (Go's net.Listen: IPv6 in brackets)."""
    parts = urlsplit(url)
    try:
        port = parts.port  # raises ValueError when not a number from 0 to 65535
    except ValueError:
        port = None
    if parts.scheme not in {"http", "https"} or not parts.hostname or not port:
        raise InitError(f"{option} must look like http://HOST:PORT, not {url!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}"


def _check_url(url: str, option: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InitError(f"{option} must look like http(s)://HOST[:PORT], not {url!r}")


def _write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)


async def _create_admin(path: Path, password: str) -> None:
    store = SqliteAuthStore(path)
    await store.open()
    try:
        found = await store.get_user(ADMIN_USER)
        if found is None:
            admin = User(ADMIN_USER, "admin@localhost", admin=True, enabled=True)
            await store.create_user(admin, hash_password(password))
        else:
            await store.update_user(ADMIN_USER, admin=True, enabled=True,
                                    password_hash=hash_password(password),
                                    bump_epoch=ends_credentials(found[0], password=True))
    finally:
        await store.close()
