"""The permission decision as a table: Portus' model (issue 3, services/auth/policy.py).

Every row is written out by hand from the model, not computed:

- team roles: ``viewer`` pulls; ``contributor`` pulls and pushes (deletes only with
  ``delete.contributors``); ``owner`` pulls, pushes and deletes. A user's personal namespace
  is theirs as an owner's; bots have none.
- visibility decides who else pulls: ``private`` nobody, ``protected`` anyone signed in,
  ``public`` anyone, anonymous callers too unless ``anonymous_pull`` is off.
- the global namespace (names without ``/``) has no team: only admins push or delete there.
- ``push_policy``: ``allow-teams`` (personal and team namespaces), ``allow-personal`` (the
  own personal namespace only), ``admin-only``. It limits pushes, not deletes (Portus'
  ``NamespacePolicy#destroy?`` does not look at it).
- admins may do everything where a namespace exists; where none does they pull and delete
  (repositories pushed before it had to exist) but never push, so no name holds content its
  later creator inherits (issue 15); Dockyard's own identity only pulls; a disabled account
  may do nothing, admin or not.
- ``create_namespace_on_push`` lets a push create the namespace first (``push_claim``): an
  admin's, owned by no team; a team owner's, the namespace named after their team, where
  push_policy lets teams push. Nobody else's.
- the credential (password, application token, refresh token) never changes the answer.
- a bot is managed (memberships, tokens) by the owners of its owning team and by admins only;
  a role in another team the bot belongs to gives nothing, and bots manage no bot.
"""

from __future__ import annotations

from typing import Literal, cast, get_args

import pytest

from services.auth.policy import (
    ANONYMOUS,
    Access,
    Credential,
    Policy,
    Principal,
    Role,
    Visibility,
    catalog_allowed,
    grant,
    manages,
    may_manage_bot,
    push_claim,
    repository_actions,
)

# who ---------------------------------------------------------------------------------------

WHO: dict[str, Principal] = {
    "user": Principal("alice", "user"),
    "bot": Principal("robot", "bot"),
    "anonymous": ANONYMOUS,
    "admin": Principal("root", "user", admin=True),
    "service": Principal("dockyard:internal", "service", credential="internal"),
    "disabled user": Principal("alice", "user", enabled=False),
    "disabled bot": Principal("robot", "bot", enabled=False),
    "disabled admin": Principal("root", "user", admin=True, enabled=False),
}
SIGNED_IN_CREDENTIALS: tuple[Credential, ...] = ("password", "app_token", "refresh_token")

# the namespace, as seen by "alice" / "robot" / "root" -----------------------------------------
# "team": owned by a team (the role column says alice's or robot's role in it);
# "own": alice's personal namespace; "other's": bob's personal namespace;
# "global": names without "/"; "missing": no such namespace.
Namespace = Literal["team", "own", "other's", "global", "missing"]


def access_of(namespace: Namespace, role: str, visibility: str) -> Access:
    seen_as = cast("Visibility", visibility)
    if namespace == "missing":
        return Access(exists=False)
    if namespace == "global":
        return Access(exists=True, kind="global", visibility=seen_as)
    if namespace in {"own", "other's"}:
        owner = "alice" if namespace == "own" else "bob"
        return Access(exists=True, kind="personal", visibility=seen_as, owner=owner)
    team_role = None if role == "-" else cast("Role", role)
    return Access(exists=True, kind="team", visibility=seen_as, role=team_role)


POLICIES = {
    "default": Policy(),
    "no-anon-pull": Policy(anonymous_pull=False),
    "del-contrib": Policy(delete_contributors=True),
    "allow-personal": Policy(push_policy="allow-personal"),
    "admin-only": Policy(push_policy="admin-only"),
    "on-push": Policy(create_namespace_on_push=True),
}

# The table ---------------------------------------------------------------------------------
#     who               role           namespace  visibility   policy            allowed
TABLE: list[tuple[str, str, Namespace, str, str, str]] = [
    # team namespace, private: members only
    ("user",           "-",           "team",    "private",   "default",        "-"),
    ("user",           "viewer",      "team",    "private",   "default",        "pull"),
    ("user",           "contributor", "team",    "private",   "default",        "pull push"),
    ("user",           "owner",       "team",    "private",   "default",        "pull push delete"),
    ("bot",            "-",           "team",    "private",   "default",        "-"),
    ("bot",            "viewer",      "team",    "private",   "default",        "pull"),
    ("bot",            "contributor", "team",    "private",   "default",        "pull push"),
    ("bot",            "owner",       "team",    "private",   "default",        "pull push delete"),
    ("anonymous",      "-",           "team",    "private",   "default",        "-"),
    ("admin",          "-",           "team",    "private",   "default",        "pull push delete"),
    ("admin",          "viewer",      "team",    "private",   "default",        "pull push delete"),
    ("service",        "-",           "team",    "private",   "default",        "pull"),
    ("disabled user",  "owner",       "team",    "private",   "default",        "-"),
    ("disabled bot",   "contributor", "team",    "private",   "default",        "-"),
    ("disabled admin", "-",           "team",    "private",   "default",        "-"),
    # team namespace, protected: anyone signed in pulls
    ("user",           "-",           "team",    "protected", "default",        "pull"),
    ("user",           "viewer",      "team",    "protected", "default",        "pull"),
    ("user",           "contributor", "team",    "protected", "default",        "pull push"),
    ("user",           "owner",       "team",    "protected", "default",        "pull push delete"),
    ("bot",            "-",           "team",    "protected", "default",        "pull"),
    ("bot",            "contributor", "team",    "protected", "default",        "pull push"),
    ("anonymous",      "-",           "team",    "protected", "default",        "-"),
    ("admin",          "-",           "team",    "protected", "default",        "pull push delete"),
    ("service",        "-",           "team",    "protected", "default",        "pull"),
    ("disabled user",  "-",           "team",    "protected", "default",        "-"),
    ("disabled user",  "viewer",      "team",    "protected", "default",        "-"),
    # team namespace, public: anyone pulls, anonymous callers too
    ("user",           "-",           "team",    "public",    "default",        "pull"),
    ("user",           "viewer",      "team",    "public",    "default",        "pull"),
    ("user",           "contributor", "team",    "public",    "default",        "pull push"),
    ("user",           "owner",       "team",    "public",    "default",        "pull push delete"),
    ("bot",            "-",           "team",    "public",    "default",        "pull"),
    ("anonymous",      "-",           "team",    "public",    "default",        "pull"),
    ("admin",          "-",           "team",    "public",    "default",        "pull push delete"),
    ("service",        "-",           "team",    "public",    "default",        "pull"),
    ("disabled user",  "-",           "team",    "public",    "default",        "-"),
    ("disabled admin", "-",           "team",    "public",    "default",        "-"),
    # personal namespaces: the owner does everything; others as visibility says
    ("user",           "-",           "own",     "private",   "default",        "pull push delete"),
    ("user",           "-",           "own",     "protected", "default",        "pull push delete"),
    ("user",           "-",           "own",     "public",    "default",        "pull push delete"),
    ("user",           "-",           "other's", "private",   "default",        "-"),
    ("user",           "-",           "other's", "protected", "default",        "pull"),
    ("user",           "-",           "other's", "public",    "default",        "pull"),
    ("bot",            "-",           "other's", "private",   "default",        "-"),
    ("bot",            "-",           "other's", "protected", "default",        "pull"),
    ("anonymous",      "-",           "other's", "private",   "default",        "-"),
    ("anonymous",      "-",           "other's", "protected", "default",        "-"),
    ("anonymous",      "-",           "other's", "public",    "default",        "pull"),
    ("admin",          "-",           "other's", "private",   "default",        "pull push delete"),
    ("service",        "-",           "other's", "private",   "default",        "pull"),
    ("disabled user",  "-",           "own",     "private",   "default",        "-"),
    ("disabled user",  "-",           "own",     "public",    "default",        "-"),
    # the global namespace: only admins write
    ("user",           "-",           "global",  "protected", "default",        "pull"),
    ("user",           "-",           "global",  "public",    "default",        "pull"),
    ("user",           "-",           "global",  "private",   "default",        "-"),
    ("bot",            "-",           "global",  "protected", "default",        "pull"),
    ("anonymous",      "-",           "global",  "protected", "default",        "-"),
    ("anonymous",      "-",           "global",  "public",    "default",        "pull"),
    ("admin",          "-",           "global",  "protected", "default",        "pull push delete"),
    ("admin",          "-",           "global",  "public",    "default",        "pull push delete"),
    ("service",        "-",           "global",  "protected", "default",        "pull"),
    ("disabled user",  "-",           "global",  "public",    "default",        "-"),
    ("disabled admin", "-",           "global",  "protected", "default",        "-"),
    ("user",           "-",           "global",  "protected", "del-contrib",    "pull"),
    ("user",           "-",           "global",  "protected", "allow-personal", "pull"),
    # a namespace that does not exist: nothing, except for admins (no push) and Dockyard itself
    ("user",           "-",           "missing", "private",   "default",        "-"),
    ("bot",            "-",           "missing", "private",   "default",        "-"),
    ("anonymous",      "-",           "missing", "private",   "default",        "-"),
    ("admin",          "-",           "missing", "private",   "default",        "pull delete"),
    ("admin",          "-",           "missing", "private",   "on-push",        "pull delete"),
    ("admin",          "-",           "missing", "private",   "admin-only",     "pull delete"),
    ("user",           "-",           "missing", "private",   "on-push",        "-"),
    ("service",        "-",           "missing", "private",   "default",        "pull"),
    ("disabled admin", "-",           "missing", "private",   "default",        "-"),
    # anonymous_pull off: public means "anyone signed in"
    ("anonymous",      "-",           "team",    "public",    "no-anon-pull",   "-"),
    ("anonymous",      "-",           "other's", "public",    "no-anon-pull",   "-"),
    ("anonymous",      "-",           "global",  "public",    "no-anon-pull",   "-"),
    ("user",           "-",           "team",    "public",    "no-anon-pull",   "pull"),
    ("bot",            "-",           "global",  "public",    "no-anon-pull",   "pull"),
    ("user",           "viewer",      "team",    "private",   "no-anon-pull",   "pull"),
    # delete.contributors: contributors delete too, viewers still do not
    ("user",           "viewer",      "team",    "private",   "del-contrib",    "pull"),
    ("user",           "contributor", "team",    "private",   "del-contrib",    "pull push delete"),
    ("user",           "owner",       "team",    "private",   "del-contrib",    "pull push delete"),
    ("bot",            "contributor", "team",    "public",    "del-contrib",    "pull push delete"),
    ("user",           "-",           "team",    "public",    "del-contrib",    "pull"),
    ("anonymous",      "-",           "team",    "public",    "del-contrib",    "pull"),
    # push_policy allow-personal: pushes only to one's own personal namespace
    ("user",           "-",           "own",     "private",   "allow-personal", "pull push delete"),
    ("user",           "viewer",      "team",    "private",   "allow-personal", "pull"),
    ("user",           "contributor", "team",    "private",   "allow-personal", "pull"),
    ("user",           "owner",       "team",    "private",   "allow-personal", "pull delete"),
    ("bot",            "contributor", "team",    "private",   "allow-personal", "pull"),
    ("user",           "-",           "other's", "public",    "allow-personal", "pull"),
    ("admin",          "-",           "team",    "private",   "allow-personal", "pull push delete"),
    # push_policy admin-only: nobody but admins pushes, not even to a personal namespace
    ("user",           "-",           "own",     "private",   "admin-only",     "pull delete"),
    ("user",           "contributor", "team",    "private",   "admin-only",     "pull"),
    ("user",           "owner",       "team",    "protected", "admin-only",     "pull delete"),
    ("bot",            "owner",       "team",    "private",   "admin-only",     "pull delete"),
    ("admin",          "-",           "team",    "private",   "admin-only",     "pull push delete"),
    ("admin",          "-",           "global",  "protected", "admin-only",     "pull push delete"),
    ("service",        "-",           "team",    "private",   "admin-only",     "pull"),
]


def credentials_of(who: str) -> tuple[Credential, ...]:
    principal = WHO[who]
    if principal.kind == "anonymous":
        return ("none",)
    if principal.kind == "service":
        return ("internal",)
    return SIGNED_IN_CREDENTIALS


def expand() -> list[object]:
    """Every row once per credential the principal can hold: the answer must not change."""
    return [
        pytest.param(who, role, namespace, visibility, policy, allowed, credential,
                     id=f"{who}|{role}|{namespace}|{visibility}|{policy}|{credential}")
        for who, role, namespace, visibility, policy, allowed in TABLE
        for credential in credentials_of(who)
    ]


@pytest.mark.parametrize(
    ("who", "role", "namespace", "visibility", "policy", "allowed", "credential"), expand()
)
def test_the_decision_table(who, role, namespace, visibility, policy, allowed, credential):
    principal = Principal(WHO[who].name, WHO[who].kind, admin=WHO[who].admin,
                          enabled=WHO[who].enabled, credential=credential)
    access = access_of(namespace, role, visibility)
    expected = frozenset(allowed.split()) - {"-"}

    assert repository_actions(principal, access, POLICIES[policy]) == expected


@pytest.mark.parametrize(("who", "role", "namespace", "visibility", "policy", "allowed"), TABLE)
@pytest.mark.parametrize("action", ["pull", "push", "delete"])
def test_each_action_is_granted_only_when_the_table_allows_it(
    who, role, namespace, visibility, policy, allowed, action
):
    """What the token endpoint does with one action asked: the grant is it, or nothing."""
    allowed_actions = repository_actions(WHO[who], access_of(namespace, role, visibility),
                                         POLICIES[policy])
    granted = grant(frozenset({action}), allowed_actions)
    assert granted == (frozenset({action}) if action in allowed.split() else frozenset())


def test_the_table_covers_every_dimension():
    """Guards the table against losing a whole dimension in an edit."""
    assert {row[0] for row in TABLE} == set(WHO)
    assert {row[1] for row in TABLE} == {"-", "viewer", "contributor", "owner"}
    assert {row[2] for row in TABLE} == set(get_args(Namespace))
    assert {row[3] for row in TABLE} == {"private", "protected", "public"}
    assert {row[4] for row in TABLE} == set(POLICIES)


# grant -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("asked", "allowed", "granted"),
    [
        ("pull", "pull push delete", "pull"),
        ("pull push delete", "pull", "pull"),
        ("pull push", "pull push", "pull push"),
        ("push", "pull", ""),
        ("delete", "pull push", ""),
        ("pull", "", ""),
        ("", "pull push delete", ""),
        ("*", "pull push", "pull push"),  # "*" asks for everything allowed
        ("*", "", ""),
        ("* pull", "pull", "pull"),
        ("*", "*", "*"),  # the catalog: allowed is "*"
        ("pull", "*", ""),  # "*" allowed does not satisfy a different action asked
        ("pull unknown", "pull push", "pull"),  # actions nobody grants are dropped
    ],
)
def test_grant_is_the_intersection(asked, allowed, granted):
    assert grant(frozenset(asked.split()), frozenset(allowed.split())) == frozenset(
        granted.split())


# the catalog -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("who", "allowed"),
    [
        ("admin", True),
        ("service", True),
        ("user", False),
        ("bot", False),
        ("anonymous", False),
        ("disabled admin", False),
        ("disabled user", False),
    ],
)
@pytest.mark.parametrize("credential", SIGNED_IN_CREDENTIALS)
def test_only_admins_and_dockyard_list_the_catalog(who, allowed, credential):
    principal = WHO[who]
    principal = Principal(principal.name, principal.kind, admin=principal.admin,
                          enabled=principal.enabled, credential=credential)
    assert catalog_allowed(principal) is allowed


# pushes into a namespace nobody created ----------------------------------------------------

# who, their role in the team named like the namespace, policy → who owns what the push creates
CLAIMS = [
    ("admin",          "-",           "default",        None),
    ("admin",          "-",           "on-push",        "admins"),
    ("admin",          "owner",       "on-push",        "admins"),
    ("admin",          "-",           "on-push personal", "admins"),
    ("user",           "owner",       "on-push",        "team"),
    ("bot",            "owner",       "on-push",        "team"),
    ("user",           "owner",       "default",        None),
    ("user",           "contributor", "on-push",        None),
    ("user",           "viewer",      "on-push",        None),
    ("user",           "-",           "on-push",        None),
    ("user",           "owner",       "on-push personal", None),
    ("user",           "owner",       "on-push admin-only", None),
    ("anonymous",      "-",           "on-push",        None),
    ("service",        "-",           "on-push",        None),
    ("disabled admin", "-",           "on-push",        None),
    ("disabled user",  "owner",       "on-push",        None),
]
CLAIM_POLICIES = POLICIES | {
    "on-push personal": Policy(create_namespace_on_push=True, push_policy="allow-personal"),
    "on-push admin-only": Policy(create_namespace_on_push=True, push_policy="admin-only"),
}


@pytest.mark.parametrize(("who", "role", "policy", "owner"), CLAIMS,
                         ids=[f"{w}|{r}|{p}" for w, r, p, _ in CLAIMS])
def test_who_a_push_creates_a_namespace_for(who, role, policy, owner):
    team_role = None if role == "-" else cast("Role", role)
    assert push_claim(WHO[who], team_role, CLAIM_POLICIES[policy]) == owner


# who manages a namespace (sees addresses and user agents in its activity) ----------------

@pytest.mark.parametrize(
    ("who", "namespace", "role", "expected"),
    [
        ("admin", "missing", "-", True),
        ("disabled admin", "team", "owner", False),
        ("user", "own", "-", True),
        ("user", "other's", "-", False),
        ("user", "team", "owner", True),
        ("user", "team", "contributor", False),
        ("user", "team", "viewer", False),
        ("user", "team", "-", False),
        ("user", "global", "-", False),
        ("bot", "team", "owner", True),
        ("bot", "team", "viewer", False),
        ("anonymous", "team", "-", False),
        ("disabled user", "own", "-", False),
    ],
)
def test_who_manages_a_namespace(who: str, namespace: Namespace, role: str,
                                 expected: bool) -> None:
    assert manages(WHO[who], access_of(namespace, role, "public")) is expected


# bots --------------------------------------------------------------------------------------
# The bot is owned by team "devs" (or by the admins: None); the role is the asker's in "devs";
# "ops" is another team the bot may be a member of, where the asker is owner.


@pytest.mark.parametrize(
    ("who", "owner_team", "roles", "allowed"),
    [
        ("admin", "devs", {}, True),
        ("admin", None, {}, True),
        ("service", None, {}, False),  # Dockyard's own identity (the CLI operator is an admin)
        ("user", "devs", {"devs": "owner"}, True),
        ("user", "devs", {"devs": "contributor"}, False),
        ("user", "devs", {"devs": "viewer"}, False),
        ("user", "devs", {"ops": "owner"}, False),  # owning a team the bot is in is not enough
        ("user", "devs", {}, False),
        ("user", None, {"devs": "owner"}, False),  # admins' bots: admins only
        ("bot", "devs", {"devs": "owner"}, False),  # bots manage no bot
        ("anonymous", "devs", {}, False),
        ("disabled user", "devs", {"devs": "owner"}, False),
        ("disabled admin", "devs", {}, False),
    ],
)
def test_who_manages_a_bot(who, owner_team, roles, allowed):
    assert may_manage_bot(WHO[who], owner_team, roles) is allowed
