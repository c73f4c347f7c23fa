"""Dockyard's configuration: ``dockyard.toml`` overlaid with ``DOCKYARD_<SECTION>_<KEY>``.

Every setting lives in a section of the TOML file and can be overridden by an environment
variable named after its section and key, upper-cased (``[webhook] secret`` ↔
``DOCKYARD_WEBHOOK_SECRET``). Validation happens once, at start, and a bad value is reported
with the key that holds it (``webhook.max_body_bytes: …``) so the operator knows what to fix.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["Config", "ConfigError", "load_config"]

ENV_PREFIX = "DOCKYARD_"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and the problem."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    listen: str = "127.0.0.1:5050"
    external_url: str = "http://127.0.0.1:5050"
    data_dir: Path = Path()

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:  # noqa: PLR2004
            raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:5050")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class RegistryConfig(_Section):
    url: str = "http://127.0.0.1:5000"
    config: Path = Path("registry.yml")
    binary: str = "docker-registry"
    timeout_seconds: float = Field(default=10.0, gt=0)


class WebhookConfig(_Section):
    secret: str = Field(min_length=16)
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)


class EventLogConfig(_Section):
    backend: Literal["sqlite"] = "sqlite"
    path: Path = Path("events.db")
    # Consumed entries are kept this long, for inspection and for consumer groups added later.
    retention_hours: float = Field(default=168, ge=0)
    # FULL fsyncs the WAL at every commit: an acknowledged webhook survives power loss.
    synchronous: Literal["FULL", "NORMAL"] = "FULL"


class StoreConfig(_Section):
    backend: Literal["sqlite"] = "sqlite"


class ActivityConfig(_Section):
    record_pulls: bool = False


class SyncConfig(_Section):
    # How often serve reconciles the catalog with the registry; 0 turns the periodic job off.
    interval_seconds: float = Field(default=3600, ge=0)


class AuthConfig(_Section):
    # Token signing keys (keys/NNNN.key + .crt) and the bundle the registry trusts.
    keys_dir: Path = Path("keys")
    certificate_bundle: Path = Path("token-bundle.crt")
    algorithm: Literal["ES256", "RS256"] = "ES256"
    issuer: str = "dockyard"
    service: str = "dockyard-registry"
    token_ttl_seconds: int = Field(default=300, ge=60, le=86400)
    anonymous_pull: bool = True
    delete_contributors: bool = False
    push_policy: Literal["allow-teams", "allow-personal", "admin-only"] = "allow-teams"
    max_failed_logins: int = Field(default=10, ge=1)
    lockout_seconds: float = Field(default=600, ge=0)
    credential_cache_seconds: float = Field(default=60, ge=0)
    # Token endpoint limits, per client address and per account name.
    rate_per_ip_per_minute: int = Field(default=600, ge=1)
    rate_per_user_per_minute: int = Field(default=300, ge=1)


class PermissionsConfig(_Section):
    """What non-admins may do, like Portus' ``user_permission.*`` switches."""

    create_team: bool = True
    manage_team: bool = True
    create_namespace: bool = True
    manage_namespace: bool = True
    change_visibility: bool = True


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"


class Config(_Section):
    server: ServerConfig = ServerConfig()
    registry: RegistryConfig = RegistryConfig()
    webhook: WebhookConfig
    eventlog: EventLogConfig = EventLogConfig()
    store: StoreConfig = StoreConfig()
    activity: ActivityConfig = ActivityConfig()
    sync: SyncConfig = SyncConfig()
    auth: AuthConfig = AuthConfig()
    permissions: PermissionsConfig = PermissionsConfig()
    log: LogConfig = LogConfig()

    def path(self, relative: Path) -> Path:
        """A path from the config, taken relative to the data directory unless absolute."""
        return relative if relative.is_absolute() else self.server.data_dir / relative

    @classmethod
    def from_mapping(cls, data: dict[str, Any], env: dict[str, str] | None = None) -> Self:
        merged = _overlay_env(data, os.environ if env is None else env)
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None


def load_config(path: Path, env: dict[str, str] | None = None) -> Config:
    """Read ``path``, apply environment overrides, validate; data_dir defaults to its folder."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (create it with 'dockyard init')") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    server = data.setdefault("server", {})
    if isinstance(server, dict):
        server.setdefault("data_dir", str(path.resolve().parent))
    return Config.from_mapping(data, env)


def _overlay_env(data: dict[str, Any], env: os._Environ[str] | dict[str, str]) -> dict[str, Any]:
    merged: dict[str, Any] = {name: dict(value) if isinstance(value, dict) else value
                              for name, value in data.items()}
    for section_name, field in Config.model_fields.items():
        section_model = field.annotation
        if not (isinstance(section_model, type) and issubclass(section_model, _Section)):
            continue
        for key in section_model.model_fields:
            variable = f"{ENV_PREFIX}{section_name}_{key}".upper()
            if variable in env:
                section = merged.setdefault(section_name, {})
                if not isinstance(section, dict):
                    raise ConfigError(f"{section_name}: expected a table")
                section[key] = env[variable]
    return merged


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        problems.append(f"{key}: {message}")
    return "invalid configuration: " + "; ".join(problems)
