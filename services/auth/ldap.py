"""LDAP sign-in with ldap3: find the user, check the password by binding as them, read groups.

Two ways to find the user's DN: *search-then-bind* (a service account, ``[ldap] bind_dn``,
searches ``user_base`` with ``(&<user_filter>(<uid_attribute>=<username>))``) or *direct bind*
(``user_dn_template``, e.g. ``uid={username},ou=people,dc=example,dc=org``). Every piece of
user input is escaped: RFC 4515 filter escaping (``ldap3.utils.conv.escape_filter_chars``) in
filters, RFC 4514 escaping (``escape_rdn``) in DNs, so ``*)(uid=*`` is a name like any other.
An empty password is refused before the directory is asked: RFC 4513 §5.1.2 makes a simple
bind with a DN and no password an *unauthenticated* bind, which many servers accept.

ldap3 is blocking; every operation runs in a thread pool of ``pool_size`` threads, each taking
a connection from a pool of open connections (opened with StartTLS or over ldaps://, with the
CA file and timeouts of the config). A connection is re-bound as the service account before a
search and as the user to check a password. A connection the server dropped is replaced once;
a directory that cannot be reached raises ``DirectoryUnavailable`` (503), which never affects
local accounts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from services.core.config import LdapConfig
from services.core.errors import Unauthorized

with warnings.catch_warnings():
    # ldap3 2.9.1 (the latest release) imports pyasn1's tagMap/typeMap, which pyasn1 0.6.1
    # renamed with a DeprecationWarning; the old names still work.
    warnings.simplefilter("ignore", DeprecationWarning)
    from ldap3 import ANONYMOUS, BASE, SIMPLE, SUBTREE, Connection, Server, Tls
    from ldap3.core.exceptions import LDAPException
    from ldap3.utils.conv import escape_filter_chars
    from ldap3.utils.dn import escape_rdn, parse_dn

__all__ = [
    "DirectoryEntry",
    "DirectoryUnavailable",
    "LdapDirectory",
    "group_filter",
    "normalize_dn",
    "user_dn",
    "user_filter",
]

log = logging.getLogger("dockyard.auth.ldap")

T = TypeVar("T")
INVALID_CREDENTIALS = 49  # RFC 4511 §4.1.9 resultCode invalidCredentials
SIZE_LIMIT_EXCEEDED = 4
NO_SUCH_OBJECT = 32
_MEMBER_ATTRIBUTE = {"groupOfNames": "member", "groupOfUniqueNames": "uniqueMember"}


class DirectoryUnavailable(Unauthorized):
    """The directory cannot be reached or refused to work with us: the person could not be
    authenticated, through no fault of theirs (503: try again later)."""

    status = 503


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    dn: str
    email: str
    groups: frozenset[str]  # normalized DNs (normalize_dn)
    # "<attribute>:<value>" of the first ``[ldap] id_attributes`` the entry has ("" if none).
    unique_id: str = ""


def normalize_dn(dn: str) -> str:
    """A DN in one spelling, for comparisons: attribute types and values lower-cased, no
    spaces around separators (DN matching is case-insensitive for the usual attributes)."""
    try:
        parts = parse_dn(dn, escape=False, strip=True)
    except LDAPException:
        return dn.strip().lower()
    return ",".join(f"{attr.lower()}={value.lower()}" for attr, value, _ in parts)


def user_filter(settings: LdapConfig, username: str) -> str:
    """``(&<user_filter>(<uid>=<escaped username>))`` (RFC 4515 §3 escaping)."""
    base = _wrapped(settings.user_filter)
    return f"(&{base}({settings.uid_attribute}={escape_filter_chars(username)}))"


def _wrapped(configured: str) -> str:
    """The operator's filter in parentheses (``objectClass=person`` is accepted too)."""
    if not configured:
        return "(objectClass=*)"
    return configured if configured.startswith("(") else f"({configured})"


def user_dn(template: str, username: str) -> str:
    """The DN of a direct bind, the username escaped as an RDN value (RFC 4514 §2.4)."""
    return template.replace("{username}", escape_rdn(username))


def group_filter(kind: str, member_dn: str) -> str:
    attribute = _MEMBER_ATTRIBUTE[kind]
    return f"(&(objectClass={kind})({attribute}={escape_filter_chars(member_dn)}))"


class _Link:
    """One open connection and whom it is bound as (None: not bound, or unknown)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.bound_as: str | None = None


class LdapDirectory:
    def __init__(self, settings: LdapConfig) -> None:
        self._settings = settings
        self._executor = ThreadPoolExecutor(settings.pool_size, thread_name_prefix="ldap")
        self._idle: list[_Link] = []
        self._lock = threading.Lock()

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._close_idle)
        self._executor.shutdown(wait=True)

    async def authenticate(self, username: str, password: str) -> DirectoryEntry | None:
        """The user's entry if the password is right; None if not, or if there is no such user
        (the two are not told apart). DirectoryUnavailable when the directory cannot answer."""
        if not password:
            return None
        return await self._run(lambda link: self._authenticate(link, username, password))

    async def lookup(self, username: str) -> DirectoryEntry | None:
        """The user's entry as the service account sees it (for the periodic sync)."""
        return await self._run(lambda link: self._find(link, username))

    async def ping(self) -> None:
        """Raise DirectoryUnavailable unless the server answers a search (for /health)."""
        await self._run(self._ping)

    # in the pool's threads -------------------------------------------------------------

    def _ping(self, link: _Link) -> None:
        self._as_service(link)
        # The root DSE (RFC 4512 §5.1), asking for no attributes ("1.1", RFC 4511 §4.5.1.8).
        if not link.conn.search("", "(objectClass=*)", BASE, attributes=["1.1"]):
            raise DirectoryUnavailable("directory_error", "the LDAP server refused a search:"
                                       f" {link.conn.result.get('description')}")

    def _authenticate(self, link: _Link, username: str, password: str) -> DirectoryEntry | None:
        settings = self._settings
        if settings.user_dn_template:
            dn = user_dn(settings.user_dn_template, username)
            if not self._bind(link, dn, password):
                return None
            if settings.bind_dn:
                return self._entry(link, dn, self._read(link, dn, as_service=True))
            return self._entry(link, dn, self._read(link, dn, as_service=False))
        entry = self._find(link, username)
        if entry is None or not self._bind(link, entry.dn, password):
            return None
        return entry

    def _find(self, link: _Link, username: str) -> DirectoryEntry | None:
        settings = self._settings
        if settings.user_dn_template and not settings.user_base:
            dn = user_dn(settings.user_dn_template, username)
            return self._entry(link, dn, self._read(link, dn, as_service=True))
        self._as_service(link)
        conn = link.conn
        ok = conn.search(settings.user_base, user_filter(settings, username), SUBTREE,
                         attributes=self._attributes(), size_limit=2)
        # RFC 4511 §A.1: 4 sizeLimitExceeded (several matched: refused below),
        # 32 noSuchObject (user_base does not exist: nobody to find).
        if not ok and conn.result.get("result") not in {0, SIZE_LIMIT_EXCEEDED, NO_SUCH_OBJECT}:
            raise DirectoryUnavailable("directory_error",
                                       f"LDAP search failed: {conn.result.get('description')}")
        if len(conn.entries) != 1:
            if len(conn.entries) > 1:
                log.warning("ldap user filter matches several entries; refusing",
                            extra={"username": username})
            return None
        found = conn.entries[0]
        return self._entry(link, found.entry_dn, found.entry_attributes_as_dict)

    def _read(self, link: _Link, dn: str, *, as_service: bool) -> dict[str, Any] | None:
        if as_service:
            self._as_service(link)
        conn = link.conn
        if not conn.search(dn, _wrapped(self._settings.user_filter), BASE,
                           attributes=self._attributes()) or not conn.entries:
            return None
        return dict(conn.entries[0].entry_attributes_as_dict)

    def _entry(self, link: _Link, dn: str,
               attributes: dict[str, Any] | None) -> DirectoryEntry | None:
        if attributes is None:
            return None
        settings = self._settings
        emails = attributes.get(settings.email_attribute) or []
        if settings.group_membership == "memberOf":
            groups = attributes.get("memberOf") or []
        else:
            self._as_service(link)
            conn = link.conn
            conn.search(settings.group_base, group_filter(settings.group_membership, dn),
                        SUBTREE, attributes=[])
            groups = [found.entry_dn for found in conn.entries]
        return DirectoryEntry(dn, str(emails[0]) if emails else "",
                              frozenset(normalize_dn(str(group)) for group in groups),
                              self._unique_id(attributes))

    def _unique_id(self, attributes: dict[str, Any]) -> str:
        by_name = {name.lower(): value for name, value in attributes.items()}
        for name in self._settings.id_attributes:
            values = by_name.get(name.lower())
            value = values[0] if isinstance(values, list) and values else values
            if isinstance(value, bytes):  # objectGUID is 16 raw bytes
                value = value.hex()
            if value:
                return f"{name}:{str(value).lower()}"
        return ""

    def _attributes(self) -> list[str]:
        # Operational attributes (entryUUID) are only sent when asked for by name.
        attributes = [self._settings.uid_attribute, self._settings.email_attribute,
                      *self._settings.id_attributes]
        if self._settings.group_membership == "memberOf":
            attributes.append("memberOf")
        return attributes

    def _bind(self, link: _Link, dn: str, password: str) -> bool:
        link.bound_as = None
        if link.conn.rebind(user=dn, password=password, authentication=SIMPLE):
            link.bound_as = dn
            return True
        if link.conn.result.get("result") == INVALID_CREDENTIALS:
            return False
        raise DirectoryUnavailable(
            "directory_error", f"LDAP bind failed: {link.conn.result.get('description')}")

    def _as_service(self, link: _Link) -> None:
        settings = self._settings
        wanted = settings.bind_dn or ""
        if link.bound_as == wanted:
            return
        link.bound_as = None
        if settings.bind_dn:
            ok = link.conn.rebind(user=settings.bind_dn, password=settings.bind_password,
                                  authentication=SIMPLE)
        else:
            ok = link.conn.rebind(authentication=ANONYMOUS)
        if not ok:
            raise DirectoryUnavailable(
                "directory_service_bind",
                "the LDAP service account cannot bind ([ldap] bind_dn / bind_password):"
                f" {link.conn.result.get('description')}")
        link.bound_as = wanted

    def _open(self) -> _Link:
        settings = self._settings
        # ldap3 packs receive_timeout into a struct timeval: whole seconds only.
        tls = Tls(ca_certs_file=str(settings.ca_file) if settings.ca_file else None,
                  validate=ssl.CERT_REQUIRED)
        # A Server per connection: ldap3 marks an address that failed once as unavailable in
        # its Server object and would not try it again after the directory comes back.
        server = Server(settings.url, tls=tls, get_info="NO_INFO",
                        connect_timeout=settings.connect_timeout_seconds)
        conn = Connection(server, receive_timeout=math.ceil(settings.timeout_seconds),
                          raise_exceptions=False, read_only=True, auto_referrals=False)
        try:
            conn.open()
            tls_refused = settings.start_tls and not settings.url.startswith("ldaps://") \
                and not conn.start_tls()
        except BaseException:
            _discard(conn)
            raise
        if tls_refused:
            _discard(conn)
            raise DirectoryUnavailable("directory_tls", "the LDAP server refused StartTLS")
        return _Link(conn)

    def _with_link(self, work: Callable[[_Link], T]) -> T:
        with self._lock:
            link = self._idle.pop() if self._idle else None
        for attempt in range(2):
            fresh = link is None
            if link is None:
                link = self._open()
            try:
                result = work(link)
            except LDAPException:
                _discard(link.conn)
                link = None
                if fresh or attempt:
                    raise
                continue  # a pooled connection the server closed: once more on a new one
            except BaseException:
                _discard(link.conn)
                raise
            with self._lock:
                self._idle.append(link)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _close_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for link in idle:
            _discard(link.conn)

    async def _run(self, work: Callable[[_Link], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._with_link, work)
        except LDAPException as exc:
            log.warning("ldap unavailable", extra={"error": f"{type(exc).__name__}: {exc}"})
            raise DirectoryUnavailable(
                "directory_unavailable",
                f"the LDAP directory at {self._settings.url} cannot be reached"
                f" ({type(exc).__name__}: {exc}); directory accounts cannot sign in now, local"
                " accounts can") from None


def _discard(conn: Connection) -> None:
    """Close a connection, even one the server already dropped (unbind then fails)."""
    with contextlib.suppress(LDAPException, OSError):
        conn.unbind()
    sock = getattr(conn, "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
