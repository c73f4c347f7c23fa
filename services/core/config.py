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

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = ["Config", "ConfigError", "load_config"]

ENV_PREFIX = "DOCKYARD_"
# Short names for the backend choices (ARCHITECTURE.md, issue #4); DOCKYARD_<SECTION>_<KEY> wins
# when both are set.
ENV_ALIASES = {"DOCKYARD_BUS": ("eventlog", "backend"), "DOCKYARD_STORE": ("store", "backend")}


# Shared secrets (the webhook's, the metrics token) are at least this long.
MIN_SECRET_LENGTH = 16


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and the problem."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Listening(_Section):
    listen: str

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class ServerConfig(_Listening):
    listen: str = "127.0.0.1:5050"
    external_url: str = "http://127.0.0.1:5050"
    data_dir: Path = Path()
    # Reverse proxies (addresses or networks) whose X-Forwarded-For is believed: the client's
    # address, which lockout throttling and rate limits count by, is then the last hop they
    # name that is not one of them. Empty: the peer's own address, whatever the headers say.
    trusted_proxies: tuple[IPvAnyNetwork, ...] = ()

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        return _listen_address(value)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        # The environment variable holds one string: addresses and networks, comma-separated.
        return [part.strip() for part in value.split(",") if part.strip()] \
            if isinstance(value, str) else value


def _listen_address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:  # noqa: PLR2004
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:5050")
    return value


class RegistryConfig(_Section):
    url: str = "http://127.0.0.1:5000"
    config: Path = Path("registry.yml")
    binary: str = "docker-registry"
    timeout_seconds: float = Field(default=10.0, gt=0)


class WebhookConfig(_Section):
    secret: str = Field(min_length=MIN_SECRET_LENGTH)
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)


class EventLogConfig(_Section):
    # Also read from DOCKYARD_BUS (the name ARCHITECTURE.md and the scale-out guide use).
    backend: Literal["sqlite", "kafka"] = "sqlite"
    path: Path = Path("events.db")
    # Consumed entries are kept this long, for inspection and for consumer groups added later.
    retention_hours: float = Field(default=168, ge=0)
    # FULL fsyncs the WAL at every commit: an acknowledged webhook survives power loss.
    synchronous: Literal["FULL", "NORMAL"] = "FULL"


class KafkaConfig(_Section):
    """The event log on Kafka (``[eventlog] backend = "kafka"``)."""

    # host:port[,host:port…] of the brokers to bootstrap from (DOCKYARD_KAFKA_BOOTSTRAP).
    bootstrap: str = "127.0.0.1:9092"
    # Topics are created at start when missing, with these.
    partitions: int = Field(default=6, ge=1)
    replication: int = Field(default=1, ge=1)
    client_id: str = "dockyard"
    # Off only for brokers without KIP-98 support (the adapter's docstring says what is lost).
    transactions: bool = True
    idempotence: bool = True
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")
    # CA bundle that signs the brokers' certificates (SSL, SASL_SSL); empty: the system's.
    ca_file: Path | None = None
    # Consumer group timings (aiokafka's defaults). A handler batch that outlasts the poll
    # interval costs the consumer its partitions.
    session_timeout_ms: int = Field(default=10_000, ge=1)
    heartbeat_interval_ms: int = Field(default=3_000, ge=1)
    max_poll_interval_ms: int = Field(default=300_000, ge=1)


class StoreConfig(_Section):
    # Also read from DOCKYARD_STORE.
    backend: Literal["sqlite", "mongodb"] = "sqlite"


class MongoConfig(_Section):
    """The stores on MongoDB (``[store] backend = "mongodb"``)."""

    # A MongoDB connection string; it may carry credentials, so it is never logged.
    uri: SecretStr = SecretStr("mongodb://127.0.0.1:27017/")
    database: str = Field(default="dockyard", min_length=1)
    # How long start waits for a server before failing with the setting to fix.
    timeout_seconds: float = Field(default=5, gt=0)


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
    # A push into a namespace nobody created creates it (services/auth/policy.py push_claim);
    # off: such pushes are refused, admins' too.
    create_namespace_on_push: bool = False
    # Wrong passwords in a row that lock an account for lockout_seconds; each further one
    # doubles the lock, up to lockout_max_seconds (services/auth/lockout.py).
    max_failed_logins: int = Field(default=10, ge=1)
    lockout_seconds: float = Field(default=600, ge=0)
    lockout_max_seconds: float = Field(default=3600, ge=0)
    # Wrong passwords from one client address in any 10 minutes before it must wait.
    max_failed_logins_per_address: int = Field(default=30, ge=1)
    credential_cache_seconds: float = Field(default=60, ge=0)
    # A refresh token (docker login's identity token) ends this long after its last use, and
    # its sign-in this long after it began, whatever its use.
    refresh_token_sliding_seconds: float = Field(default=30 * 86400, gt=0)
    refresh_token_absolute_seconds: float = Field(default=90 * 86400, gt=0)
    # How long app tokens and namespace permissions read on the hot paths are reused; changes
    # through this process apply at once, changes by another process (CLI) within this time.
    identity_cache_seconds: float = Field(default=5, ge=0)
    # Token endpoint limits, per client address and per account name.
    rate_per_ip_per_minute: int = Field(default=600, ge=1)
    rate_per_user_per_minute: int = Field(default=300, ge=1)
    # false: only admins sign in with a Dockyard password; everyone else uses the directory
    # or an OIDC provider (application tokens keep working).
    local_login: bool = True
    # Signs the pending state of a portal sign-in (OIDC, GitHub) while the browser is at the
    # provider; used for nothing else, and every replica needs the same. dockyard init writes
    # one; empty: a random key per process (a sign-in must come back to the one that began it).
    login_state_secret: str = ""

    @field_validator("login_state_secret")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        if value and len(value) < 16:  # noqa: PLR2004 - as [webhook] secret
            raise ValueError("use at least 16 characters (or leave it empty)")
        return value


class PermissionsConfig(_Section):
    """What non-admins may do, like Portus' ``user_permission.*`` switches."""

    create_team: bool = True
    manage_team: bool = True
    create_namespace: bool = True
    manage_namespace: bool = True
    change_visibility: bool = True


class PortalConfig(_Section):
    # Anonymous visitors may browse public namespaces (as anonymous pulls may read them).
    anonymous_explore: bool = True
    # A portal session ends this long after sign-in, or after this long without a request.
    session_ttl_seconds: float = Field(default=12 * 3600, ge=60)
    session_idle_seconds: float = Field(default=2 * 3600, ge=60)
    # Changing the password in the portal needs the current one, unless the session began
    # this recently.
    reauthenticate_seconds: float = Field(default=600, ge=0)


class GroupMapping(_Section):
    """A directory group (LDAP DN, OIDC groups-claim value, GitHub ``org/team``) → a team."""

    group: str = Field(min_length=1)
    team: str = Field(min_length=1)
    role: Literal["viewer", "contributor", "owner"] = "viewer"


class LdapConfig(_Section):
    """Sign-in against an LDAP directory (services/auth/ldap.py); off while ``url`` is empty."""

    url: str = ""  # ldap://host[:389] (with start_tls) or ldaps://host[:636]
    start_tls: bool = True
    ca_file: Path | None = None  # trusted CA for the server's certificate (system CAs if unset)
    # Search-then-bind: the service account that finds users (and groups); empty = anonymous.
    bind_dn: str = ""
    bind_password: str = ""
    # Direct bind instead of a search: "uid={username},ou=people,dc=example,dc=org".
    user_dn_template: str = ""
    user_base: str = ""
    user_filter: str = "(objectClass=inetOrgPerson)"
    uid_attribute: str = "uid"
    email_attribute: str = "mail"
    # An entry's stable id, the first of these it has (RFC 4530 entryUUID: OpenLDAP, 389-ds;
    # objectGUID: Active Directory): accounts are linked to it, so a new entry under a reused
    # uid is someone else. []: linked by DN.
    id_attributes: list[str] = ["entryUUID", "objectGUID"]
    # Where a user's groups come from: the user's memberOf, or a search of groupOfNames
    # (member) / groupOfUniqueNames (uniqueMember) entries under group_base.
    group_membership: Literal["memberOf", "groupOfNames", "groupOfUniqueNames"] = "memberOf"
    group_base: str = ""
    admin_group: str = ""  # DN whose members are Dockyard admins
    groups: list[GroupMapping] = []
    # false: sync adds and removes only the memberships it made itself; true: it also
    # removes members of mapped teams that were added by hand.
    manage_manual_members: bool = False
    sync_interval_seconds: float = Field(default=3600, ge=0)
    connect_timeout_seconds: float = Field(default=5, gt=0)
    timeout_seconds: float = Field(default=10, gt=0)
    pool_size: int = Field(default=4, ge=1, le=64)

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if value and not value.startswith(("ldap://", "ldaps://")):
            raise ValueError("expected ldap://HOST[:PORT] or ldaps://HOST[:PORT]")
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.url)


class OidcProviderConfig(_Section):
    """One sign-in provider of the portal (services/auth/oidc.py, services/auth/github.py)."""

    kind: Literal["oidc", "github"] = "oidc"
    display_name: str = ""
    issuer: str = ""  # OIDC: discovery at <issuer>/.well-known/openid-configuration
    client_id: str = Field(min_length=1)
    client_secret: str = ""
    scopes: list[str] = ["openid", "profile", "email"]
    username_claim: str = "preferred_username"
    email_claim: str = "email"
    groups_claim: str = "groups"
    admin_group: str = ""
    # false: only accounts that already exist (pre-created by an admin) may sign in.
    auto_onboard: bool = True
    groups: list[GroupMapping] = []
    manage_manual_members: bool = False
    # GitHub: who may sign in at all — members of these organisations or "org/team"s, and
    # these logins. A GitHub provider needs at least one: GitHub itself admits anyone.
    organizations: list[str] = []
    github_teams: list[str] = []
    github_users: list[str] = []
    api_url: str = "https://api.github.com"
    authorize_url: str = "https://github.com/login/oauth/authorize"
    token_url: str = "https://github.com/login/oauth/access_token"  # noqa: S105 - a URL
    timeout_seconds: float = Field(default=10, gt=0)
    clock_skew_seconds: int = Field(default=60, ge=0)
    # An account with no sign-in through this provider for this long is disabled (its app
    # tokens stop working) until its next sign-in: the provider never says who left. 0: never.
    inactive_days: float = Field(default=90, ge=0)

    @model_validator(mode="after")
    def _github_allow_list(self) -> Self:
        if self.kind == "github" and not (self.organizations or self.github_teams
                                          or self.github_users):
            raise ValueError("a GitHub provider needs organizations, github_teams or"
                             " github_users: without one every GitHub account could sign in")
        return self


class ScannerConfig(_Section):
    """Scanning pushed images (services/scanner)."""

    enabled: bool = True
    path: Path = Path("scans.db")  # scan states, reports and inventories
    # The embedded engine's OSV database (``dockyard vulndb import``); empty: inventory only.
    vulndb: Path = Path("vulndb.db")
    # Images scanned at once per process; each streams one layer at a time.
    concurrency: int = Field(default=2, ge=1, le=64)
    # A scan still running after this long fails with that reason.
    timeout_seconds: float = Field(default=1800, gt=0)
    # How often the queue is looked at for scans to run (pushes queue them through the log).
    poll_seconds: float = Field(default=2, gt=0)
    # How often stored inventories are matched again after a vulnerability database change
    # made by another process (``dockyard vulndb import`` re-matches at once); 0: never.
    rematch_seconds: float = Field(default=300, ge=0)
    # Who finds the vulnerabilities: the embedded OSV engine, Clair v4 ([clair]) or an existing
    # Harbor scanner adapter such as Trivy's ([harbor] adapter_url).
    backend: Literal["embedded", "clair", "harbor"] = "embedded"
    # What the embedded engine spends on one image (services/scanner/limits.py); a scan over a
    # budget fails naming it. Bytes read and decompressed, tar entries, file content kept for
    # the detectors (hard links count again), the largest file a detector reads, and the
    # memory of the scan's own process.
    max_unpacked_bytes: int = Field(default=16 << 30, ge=1 << 20)
    max_entries: int = Field(default=1_000_000, ge=1)
    max_kept_bytes: int = Field(default=256 << 20, ge=1 << 10)
    max_file_bytes: int = Field(default=64 << 20, ge=1 << 10)
    max_memory_bytes: int = Field(default=2 << 30, ge=256 << 20)
    # A rescan (POST /api/v1/scans) queues a manifest again only this long after it was last
    # queued, and never while it is queued or scanning: each rescan reads every layer again.
    rescan_seconds: float = Field(default=60, ge=0)


class ClairConfig(_Section):
    """Clair v4 as the scanner backend (``[scanner] backend = "clair"``)."""

    url: str = "http://127.0.0.1:6060"  # indexer and matcher (Clair's combined mode)
    # Clair's auth.psk.key (base64); Dockyard signs its requests with it (HS256 JWTs).
    psk: SecretStr = SecretStr("")
    issuer: str = "dockyard"  # must be in Clair's auth.psk.iss list
    # How Clair reaches the registry for layers; empty: registry.url.
    registry_url: str = ""
    timeout_seconds: float = Field(default=300, gt=0)  # indexing fetches every layer


class HarborConfig(_Section):
    """The Harbor pluggable scanner adapter API: Dockyard's own, and one it can use."""

    # Harbor's registration sends "Authorization: Bearer <token>" to the adapter; empty: the
    # adapter API (register <dockyard>/api/harbor in Harbor) answers 404, not offered.
    api_token: SecretStr = SecretStr("")
    # An existing adapter (e.g. Trivy's) for [scanner] backend = "harbor", and its credential.
    adapter_url: str = ""
    adapter_token: SecretStr = SecretStr("")
    timeout_seconds: float = Field(default=600, gt=0)  # a scan's wait for its report


class MetricsConfig(_Listening):
    """Who reads ``/metrics`` and the readiness details (``/api/v1/health``).

    On the main listener both need an administrator's credentials or this token; nobody
    anonymous reads them. ``listen`` adds a listener that serves them, with liveness, to
    whoever reaches it and nothing else: for Prometheus and the kubelet, on an address the
    public network does not reach.
    """

    # ``Authorization: Bearer <token>`` for a scraper (compared in constant time); empty: none.
    token: SecretStr = SecretStr("")
    # HOST:PORT of the separate listener; empty: none.
    listen: str = ""
    # Readiness results are reused this long, so probes and scrapes never hammer a directory.
    health_cache_seconds: float = Field(default=5, ge=0)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        return value and _listen_address(value)

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if 0 < len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(f"expected at least {MIN_SECRET_LENGTH} characters (or none)")
        return value


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"


class Config(_Section):
    server: ServerConfig = ServerConfig()
    registry: RegistryConfig = RegistryConfig()
    webhook: WebhookConfig
    eventlog: EventLogConfig = EventLogConfig()
    kafka: KafkaConfig = KafkaConfig()
    store: StoreConfig = StoreConfig()
    mongodb: MongoConfig = MongoConfig()
    activity: ActivityConfig = ActivityConfig()
    sync: SyncConfig = SyncConfig()
    auth: AuthConfig = AuthConfig()
    permissions: PermissionsConfig = PermissionsConfig()
    ldap: LdapConfig = LdapConfig()
    # [oidc.<name>] tables: several sign-in providers at once (no environment overrides).
    oidc: dict[str, OidcProviderConfig] = {}
    portal: PortalConfig = PortalConfig()
    scanner: ScannerConfig = ScannerConfig()
    clair: ClairConfig = ClairConfig()
    harbor: HarborConfig = HarborConfig()
    metrics: MetricsConfig = MetricsConfig()
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
    for variable, (section_name, key) in ENV_ALIASES.items():
        if variable in env:
            section = merged.setdefault(section_name, {})
            if not isinstance(section, dict):
                raise ConfigError(f"{section_name}: expected a table")
            section[key] = env[variable]
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
        aliases = [name for name, place in ENV_ALIASES.items() if ".".join(place) == key]
        problems.append(f"{key}{''.join(f' ({name})' for name in aliases)}: {message}")
    return "invalid configuration: " + "; ".join(problems)
