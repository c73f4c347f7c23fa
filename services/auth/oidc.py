"""Portal sign-in with OpenID Connect (and GitHub, services/auth/github.py): the code flow.

The interface the portal uses (``Providers``, one per ``[oidc.<name>]`` table, at
``app[services.auth.directory_app.DIRECTORY].providers``; ``by_name`` lists them, each with
its ``display_name``)::

    url, pending = await providers.begin("corp")          # redirect the browser to url;
                                                          # keep pending (pending.encode(key))
    user = await providers.finish("corp", pending, request.query)   # on the callback
    # user: the Dockyard account, created (auto_onboard) or updated, its teams synced;
    # Unauthorized / Forbidden (4xx) with a message when the sign-in is refused.

``services/auth/directory_api.py`` serves that flow at ``/auth/oidc/{provider}/login`` and
``/callback`` and starts the portal session through ``services.auth.sessions.sign_in``.

What is checked (OpenID Connect Core 1.0 §3.1): the provider's metadata comes from discovery
and must name the configured issuer (Discovery §4.3); the authorization request carries a
random ``state`` (compared in constant time on return), a ``nonce`` and a PKCE S256 challenge
(RFC 7636); the ID token from the token endpoint is verified against the provider's JWKS —
signature, ``iss``, ``aud`` (and ``azp`` when several audiences), ``exp``/``iat`` with
``clock_skew_seconds`` of leeway, and ``nonce``. PyJWT (already Dockyard's JWT library; its
``PyJWKSet`` reads the JWKS) does the verification: Authlib 1.x deprecates its own ``jose``
module, whose warnings our warnings-as-errors tests would turn into failures.

OIDC users sign in to docker with application tokens made in the portal or the API: those do
not expire with the ID token (Harbor #14172), only when revoked or the account is disabled.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlencode

import httpx
import jwt

from services.auth.directory import Directory, Identity, SyncRules
from services.auth.models import User
from services.core.config import Config, OidcProviderConfig
from services.core.errors import Forbidden, Invalid, NotFound, Unauthorized

if TYPE_CHECKING:
    from services.auth.github import GithubProvider

__all__ = [
    "OidcProvider",
    "PendingLogin",
    "Provider",
    "ProviderUnavailable",
    "Providers",
    "build_providers",
    "pkce_challenge",
    "validate_id_token",
]

# A sign-in must come back within this long (the pending state's lifetime).
PENDING_SECONDS = 600
_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"]


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 §4.2 S256: BASE64URL(SHA256(ASCII(code_verifier))), without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class PendingLogin:
    """What the browser's sign-in must match when it comes back; kept by the caller (signed
    cookie or session), never shown to the provider except ``state`` and hashes."""

    provider: str
    state: str
    nonce: str
    verifier: str
    created_at: float

    def encode(self, key: bytes) -> str:
        body = base64.urlsafe_b64encode(json.dumps(asdict(self)).encode()).decode()
        mac = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
        return f"{body}.{mac}"

    @classmethod
    def decode(cls, value: str, key: bytes) -> PendingLogin:
        body, _, mac = value.rpartition(".")
        expected = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
        if not body or not hmac.compare_digest(mac, expected):
            raise Unauthorized("invalid_login_state", "the sign-in state was tampered with;"
                               " start the sign-in again")
        data = json.loads(base64.urlsafe_b64decode(body.encode()))
        return cls(**data)

    @classmethod
    def new(cls, provider: str) -> PendingLogin:
        return cls(provider, secrets.token_urlsafe(32), secrets.token_urlsafe(32),
                   secrets.token_urlsafe(48), time.time())


def check_return(pending: PendingLogin, provider: str, query: Mapping[str, str]) -> str:
    """The authorization code of a callback, once its state matches what was sent."""
    if pending.provider != provider:
        raise Unauthorized("invalid_login_state", "this sign-in was started with another"
                           " provider; start again")
    if time.time() - pending.created_at > PENDING_SECONDS:
        raise Unauthorized("login_expired", "the sign-in took too long; start again")
    if not hmac.compare_digest(query.get("state", ""), pending.state):
        raise Unauthorized("invalid_login_state", "the sign-in state does not match; start"
                           " again")
    if "error" in query:
        raise Unauthorized("provider_refused", f"the provider refused the sign-in:"
                           f" {query.get('error')} {query.get('error_description', '')}".strip())
    code = query.get("code")
    if not code:
        raise Invalid("missing_code", "the provider sent no authorization code")
    return code


def validate_id_token(
    token: str, key: jwt.PyJWK, *, issuer: str, client_id: str, nonce: str, leeway: int
) -> dict[str, Any]:
    """The claims of a valid ID token (OIDC Core §3.1.3.7), or Unauthorized naming the
    problem."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=_ALGORITHMS, audience=client_id, issuer=issuer,
            leeway=leeway, options={"require": ["iss", "sub", "aud", "exp", "iat"]})
    except jwt.ExpiredSignatureError:
        raise Unauthorized("id_token_expired", "the ID token has expired") from None
    except jwt.InvalidAudienceError:
        raise Unauthorized("id_token_audience", "the ID token is not meant for Dockyard"
                           " (aud)") from None
    except jwt.InvalidIssuerError:
        raise Unauthorized("id_token_issuer", "the ID token comes from another issuer") from None
    except jwt.PyJWTError as exc:
        raise Unauthorized("invalid_id_token", f"the ID token is not valid: {exc}") from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise Unauthorized("id_token_audience", "the ID token names several audiences and"
                           " another authorized party (azp)")
    if not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
        raise Unauthorized("id_token_nonce", "the ID token's nonce does not match this sign-in")
    return claims


class Provider(Protocol):
    name: str
    display_name: str

    async def begin(self) -> tuple[str, PendingLogin]: ...

    async def finish(self, pending: PendingLogin, query: Mapping[str, str]) -> User: ...


def rules_of(settings: OidcProviderConfig) -> SyncRules:
    return SyncRules(tuple(settings.groups), settings.admin_group,
                     settings.manage_manual_members, settings.auto_onboard)


def groups_claim(claims: Mapping[str, Any], name: str) -> frozenset[str]:
    value = claims.get(name) or []
    if isinstance(value, str):
        value = [value]
    return frozenset(str(group) for group in value if isinstance(group, (str, int)))


class OidcProvider:
    def __init__(self, name: str, settings: OidcProviderConfig, redirect_uri: str,
                 directory: Directory, http: httpx.AsyncClient) -> None:
        self.name = name
        self.display_name = settings.display_name or name
        self.settings = settings
        self.redirect_uri = redirect_uri
        self._directory = directory
        self._http = http
        self._metadata: dict[str, Any] | None = None
        self._keys: jwt.PyJWKSet | None = None

    async def begin(self) -> tuple[str, PendingLogin]:
        metadata = await self._discover()
        pending = PendingLogin.new(self.name)
        query = urlencode({
            "response_type": "code",
            "client_id": self.settings.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": " ".join(self.settings.scopes),
            "state": pending.state,
            "nonce": pending.nonce,
            "code_challenge": pkce_challenge(pending.verifier),
            "code_challenge_method": "S256",
        })
        return f"{metadata['authorization_endpoint']}?{query}", pending

    async def finish(self, pending: PendingLogin, query: Mapping[str, str]) -> User:
        code = check_return(pending, self.name, query)
        metadata = await self._discover()
        claims = await self.claims(await self._id_token(metadata, code, pending), pending.nonce)
        username = claims.get(self.settings.username_claim)
        if not isinstance(username, str) or not username:
            raise Forbidden("missing_username", f"the provider sent no"
                            f" {self.settings.username_claim!r} claim to name the account")
        identity = Identity(f"oidc:{self.name}", str(claims["sub"]), username,
                            str(claims.get(self.settings.email_claim) or ""),
                            groups_claim(claims, self.settings.groups_claim),
                            email_verified=claims.get("email_verified") is True)
        user = await self._directory.apply(identity, rules_of(self.settings))
        if not user.enabled:
            raise Forbidden("account_disabled", f"the account {user.name!r} is disabled")
        return user

    async def claims(self, id_token: str, nonce: str) -> dict[str, Any]:
        """Verify an ID token of this provider (the JWKS is fetched again for an unknown
        ``kid``: keys rotate)."""
        try:
            kid = jwt.get_unverified_header(id_token).get("kid")
        except jwt.PyJWTError:
            raise Unauthorized("invalid_id_token", "the ID token is not a JWT") from None
        key = await self._key(kid)
        return validate_id_token(id_token, key, issuer=self.settings.issuer,
                                 client_id=self.settings.client_id, nonce=nonce,
                                 leeway=self.settings.clock_skew_seconds)

    async def _id_token(self, metadata: dict[str, Any], code: str,
                        pending: PendingLogin) -> str:
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": self.redirect_uri, "code_verifier": pending.verifier}
        headers = {}
        if self.settings.client_secret:  # client_secret_basic (RFC 6749 §2.3.1)
            # The id and secret are form-urlencoded before they are joined (RFC 6749 §2.3.1).
            pair = f"{quote(self.settings.client_id)}:{quote(self.settings.client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form["client_id"] = self.settings.client_id
        try:
            response = await self._http.post(metadata["token_endpoint"], data=form,
                                             headers=headers)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable("provider_unavailable", f"the sign-in provider"
                                      f" {self.name!r} cannot be reached ({exc})") from None
        body = _json(response)
        if response.status_code != 200 or not isinstance(body.get("id_token"), str):  # noqa: PLR2004
            raise Unauthorized("token_exchange_failed", "the provider did not accept the"
                               f" authorization code: {body.get('error', response.status_code)}")
        return str(body["id_token"])

    async def _discover(self) -> dict[str, Any]:
        if self._metadata is None:
            url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
            metadata = _json(await self._get(url))
            if metadata.get("issuer") != self.settings.issuer:
                raise Unauthorized("issuer_mismatch", f"the provider at {url} calls itself"
                                   f" {metadata.get('issuer')!r}, not {self.settings.issuer!r}")
            self._metadata = metadata
        return self._metadata

    async def _key(self, kid: str | None) -> jwt.PyJWK:
        for refresh in (False, True):
            if self._keys is None or refresh:
                metadata = await self._discover()
                try:
                    self._keys = jwt.PyJWKSet.from_dict(_json(await self._get(
                        metadata["jwks_uri"])))
                except jwt.PyJWKSetError:
                    raise Unauthorized("invalid_jwks", "the provider's JWKS has no usable"
                                       " key") from None
            for key in self._keys.keys:
                if kid is None or key.key_id == kid:
                    return key
        raise Unauthorized("unknown_signing_key", "the ID token is signed with a key the"
                           " provider does not publish")

    async def _get(self, url: str) -> httpx.Response:
        try:
            return await self._http.get(url)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable("provider_unavailable", f"the sign-in provider"
                                      f" {self.name!r} cannot be reached ({exc})") from None


class ProviderUnavailable(Unauthorized):
    """The provider cannot be reached: try again later (not the person's fault)."""

    status = 503


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    return body if isinstance(body, dict) else {}


@dataclass
class Providers:
    by_name: dict[str, OidcProvider | GithubProvider] = field(default_factory=dict)
    http: httpx.AsyncClient | None = None

    def get(self, name: str) -> OidcProvider | GithubProvider:
        provider = self.by_name.get(name)
        if provider is None:
            raise NotFound("provider_not_found", f"no sign-in provider named {name!r}")
        return provider

    async def begin(self, name: str) -> tuple[str, PendingLogin]:
        return await self.get(name).begin()

    async def finish(self, name: str, pending: PendingLogin, query: Mapping[str, str]) -> User:
        return await self.get(name).finish(pending, query)

    async def aclose(self) -> None:
        if self.http is not None:
            await self.http.aclose()


def build_providers(config: Config, directory: Directory) -> Providers:
    from services.auth.github import GithubProvider  # noqa: PLC0415 - it imports this module

    if not config.oidc:
        return Providers()
    http = httpx.AsyncClient(timeout=max(p.timeout_seconds for p in config.oidc.values()),
                             headers={"Accept": "application/json"})
    base = config.server.external_url.rstrip("/")
    providers: dict[str, OidcProvider | GithubProvider] = {}
    for name, settings in config.oidc.items():
        redirect = f"{base}/auth/oidc/{name}/callback"
        providers[name] = (GithubProvider(name, settings, redirect, directory, http)
                           if settings.kind == "github"
                           else OidcProvider(name, settings, redirect, directory, http))
    return Providers(providers, http)
