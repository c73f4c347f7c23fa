"""LDAP sign-in against a real OpenLDAP (tests/support/slapd.py): binds, TLS, escaping, and the
directory client's behaviour when the server is down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.auth.ldap import (
    DirectoryUnavailable,
    LdapDirectory,
    group_filter,
    normalize_dn,
    user_dn,
    user_filter,
)
from services.core.config import Config, ConfigError, LdapConfig
from tests.support.slapd import BASE_DN, READER_DN, READER_PASSWORD, SlapdProcess, require_slapd

DEVELOPERS = normalize_dn(f"cn=developers,ou=groups,{BASE_DN}")
OPERATORS = normalize_dn(f"cn=operators,ou=groups,{BASE_DN}")


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdProcess]:
    require_slapd()
    with SlapdProcess(tmp_path_factory.mktemp("slapd")) as server:
        yield server


def settings(server: SlapdProcess, **overrides: object) -> LdapConfig:
    values: dict[str, object] = {
        "url": server.url, "start_tls": True, "ca_file": server.ca_file,
        "bind_dn": READER_DN, "bind_password": READER_PASSWORD,
        "user_base": f"ou=people,{BASE_DN}", "group_base": f"ou=groups,{BASE_DN}",
        "timeout_seconds": 3, "connect_timeout_seconds": 2,
    }
    values.update(overrides)
    return LdapConfig.model_validate(values)


# pure ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("username", "expected"), [
    ("alice", "(&(objectClass=inetOrgPerson)(uid=alice))"),
    ("*)(uid=*", "(&(objectClass=inetOrgPerson)(uid=\\2a\\29\\28uid=\\2a))"),
    ("a\\b", "(&(objectClass=inetOrgPerson)(uid=a\\5cb))"),
    ("nul\0", "(&(objectClass=inetOrgPerson)(uid=nul\\00))"),
])
def test_user_filter_escapes_user_input(username: str, expected: str) -> None:
    assert user_filter(LdapConfig(), username) == expected


def test_user_filter_wraps_a_bare_configured_filter() -> None:
    config = LdapConfig(user_filter="objectClass=person", uid_attribute="sAMAccountName")
    assert user_filter(config, "bob") == "(&(objectClass=person)(sAMAccountName=bob))"


@pytest.mark.parametrize(("username", "expected"), [
    ("alice", "uid=alice,ou=people,dc=x"),
    ("a,b=c", "uid=a\\,b\\=c,ou=people,dc=x"),
    ("+x", "uid=\\+x,ou=people,dc=x"),
])
def test_user_dn_escapes_the_rdn_value(username: str, expected: str) -> None:
    assert user_dn("uid={username},ou=people,dc=x", username) == expected


def test_group_filters_per_membership_kind() -> None:
    dn = "uid=a*,dc=x"
    assert group_filter("groupOfNames", dn) == \
        "(&(objectClass=groupOfNames)(member=uid=a\\2a,dc=x))"
    assert group_filter("groupOfUniqueNames", dn) == \
        "(&(objectClass=groupOfUniqueNames)(uniqueMember=uid=a\\2a,dc=x))"


def test_normalize_dn_ignores_case_and_spacing() -> None:
    assert normalize_dn("CN=Developers, OU=Groups,dc=Dockyard,dc=test") == \
        "cn=developers,ou=groups,dc=dockyard,dc=test"


def test_url_must_be_ldap() -> None:
    with pytest.raises(ValueError, match="ldap://"):
        LdapConfig(url="http://example.com")


# against slapd -------------------------------------------------------------------------

async def test_search_then_bind_over_starttls(slapd: SlapdProcess) -> None:
    directory = LdapDirectory(settings(slapd))
    try:
        entry = await directory.authenticate("alice", "alice-password")
        assert entry is not None
        assert normalize_dn(entry.dn) == normalize_dn(f"uid=alice,ou=people,{BASE_DN}")
        assert entry.email == "alice@dockyard.test"
        assert entry.groups == {DEVELOPERS}
        assert await directory.authenticate("alice", "wrong-password") is None
        assert await directory.authenticate("nobody", "alice-password") is None
        # An empty password would be an unauthenticated bind (RFC 4513 §5.1.2), which succeeds.
        assert await directory.authenticate("alice", "") is None
        # The pooled connection, last bound as alice, searches as the service account again.
        assert (await directory.authenticate("bob", "bob-password")) is not None
    finally:
        await directory.close()


@pytest.mark.parametrize("username", ["*", "*)(uid=*", "alice)(|(uid=*", "*)(objectClass=*"])
async def test_injection_attempts_match_nobody(slapd: SlapdProcess, username: str) -> None:
    directory = LdapDirectory(settings(slapd))
    try:
        for password in ("alice-password", "bob-password"):
            assert await directory.authenticate(username, password) is None
        assert await directory.lookup(username) is None
    finally:
        await directory.close()


async def test_ldaps(slapd: SlapdProcess) -> None:
    directory = LdapDirectory(settings(slapd, url=slapd.ldaps_url, start_tls=False))
    try:
        assert await directory.authenticate("bob", "bob-password") is not None
    finally:
        await directory.close()


async def test_a_certificate_from_an_unknown_ca_is_refused(
    slapd: SlapdProcess, tmp_path: Path
) -> None:
    other = SlapdProcess(tmp_path / "other")
    other.dir.mkdir()
    from tests.support.slapd import _self_signed  # noqa: PLC0415 - a second, unrelated CA

    _self_signed(other.dir)
    directory = LdapDirectory(settings(slapd, ca_file=other.ca_file))
    try:
        with pytest.raises(DirectoryUnavailable):
            await directory.authenticate("alice", "alice-password")
    finally:
        await directory.close()


async def test_direct_bind_with_a_dn_template(slapd: SlapdProcess) -> None:
    directory = LdapDirectory(settings(
        slapd, bind_dn="", bind_password="", user_base="",
        user_dn_template=f"uid={{username}},ou=people,{BASE_DN}"))
    try:
        entry = await directory.authenticate("alice", "alice-password")
        assert entry is not None
        assert entry.groups == {DEVELOPERS}
        assert await directory.authenticate("alice", "bob-password") is None
        assert await directory.authenticate("*", "alice-password") is None
    finally:
        await directory.close()


async def test_group_of_unique_names_membership(slapd: SlapdProcess) -> None:
    directory = LdapDirectory(settings(slapd, group_membership="groupOfUniqueNames"))
    try:
        entry = await directory.authenticate("bob", "bob-password")
        assert entry is not None
        assert entry.groups == {OPERATORS}
    finally:
        await directory.close()


async def test_down_directory_is_unavailable_and_recovers(tmp_path: Path) -> None:
    require_slapd()
    server = SlapdProcess(tmp_path / "slapd")
    server.start()
    directory = LdapDirectory(settings(server))
    try:
        assert await directory.authenticate("alice", "alice-password") is not None
        await directory.ping()
        server.stop()
        with pytest.raises(DirectoryUnavailable):
            await directory.ping()  # the pooled connection is dead, and so is a new one
        with pytest.raises(DirectoryUnavailable) as caught:
            await directory.authenticate("alice", "alice-password")
        assert caught.value.status == 503
        assert "cannot be reached" in caught.value.message
        server.start()  # same data directory, same ports
        assert await directory.authenticate("alice", "alice-password") is not None
    finally:
        await directory.close()
        server.stop()


async def test_a_filter_matching_several_entries_signs_nobody_in(slapd: SlapdProcess) -> None:
    # uid_attribute misconfigured to one every person shares: three entries match, the server
    # stops at the size limit of 2 (sizeLimitExceeded) and nobody is let in.
    directory = LdapDirectory(settings(slapd, uid_attribute="objectClass"))
    try:
        assert await directory.authenticate("inetOrgPerson", "alice-password") is None
        assert await directory.lookup("inetOrgPerson") is None
    finally:
        await directory.close()


def test_settings_from_toml_and_environment() -> None:
    config = Config.from_mapping(
        {"webhook": {"secret": "s" * 16},
         "ldap": {"url": "ldaps://ldap.example.com",
                  "groups": [{"group": "cn=devs,dc=x", "team": "web", "role": "owner"}]},
         "oidc": {"corp": {"issuer": "https://id.example.com", "client_id": "dockyard"},
                  "github": {"kind": "github", "client_id": "gh", "organizations": ["acme"]}}},
        env={"DOCKYARD_LDAP_BIND_PASSWORD": "from-env", "DOCKYARD_AUTH_LOCAL_LOGIN": "false"})
    assert config.ldap.enabled
    assert config.ldap.bind_password == "from-env"
    assert config.ldap.groups[0].role == "owner"
    assert not config.auth.local_login
    assert sorted(config.oidc) == ["corp", "github"]
    assert config.oidc["github"].kind == "github"
    assert not Config.from_mapping({"webhook": {"secret": "s" * 16}}).ldap.enabled


@pytest.mark.parametrize(("section", "message"), [
    ({"ldap": {"groups": [{"group": "g", "team": "t", "role": "admin"}]}}, "ldap.groups.0.role"),
    ({"ldap": {"pool_size": 0}}, "ldap.pool_size"),
    ({"oidc": {"corp": {"issuer": "https://x"}}}, "oidc.corp.client_id"),
    ({"oidc": {"corp": {"client_id": "x", "typo": 1}}}, "oidc.corp.typo: unknown key"),
])
def test_bad_settings_name_the_key(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        Config.from_mapping({"webhook": {"secret": "s" * 16}, **section})
