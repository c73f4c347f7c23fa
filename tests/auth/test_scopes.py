"""The scope parser (distribution docs/spec/auth/scope.md): examples and properties.

``resourcescope := resourcetype ['(' class ')'] ':' resourcename ':' action [',' action]*``;
the name may carry ``host:port/``, so the type is read from the left and the actions after the
last colon. Whatever a client sends, the parser answers with scopes or a ScopeError, quickly.
"""

from __future__ import annotations

import contextlib
import string
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.auth.scopes import MAX_SCOPE_LENGTH, MAX_SCOPES, Scope, ScopeError, parse_scopes

ACTIONS = ("pull", "push", "delete", "*")


def scope_text(scope: Scope) -> str:
    resource_type = scope.type + (f"({scope.resource_class})" if scope.resource_class else "")
    return f"{resource_type}:{scope.name}:{','.join(sorted(scope.actions))}"


# examples ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["repository:team/app:pull"],
         [Scope("repository", "team/app", frozenset({"pull"}))]),
        (["repository:team/app:pull,push"],
         [Scope("repository", "team/app", frozenset({"pull", "push"}))]),
        # a registry host with a port: the name keeps it, the actions follow the last colon
        (["repository:localhost:5000/team/app:pull,push"],
         [Scope("repository", "localhost:5000/team/app", frozenset({"pull", "push"}))]),
        (["repository:registry.example.com:443/a/b/c:delete"],
         [Scope("repository", "registry.example.com:443/a/b/c", frozenset({"delete"}))]),
        # a resource class is kept apart: the token's entry carries the plain type
        (["repository(plugin):a/b:pull"],
         [Scope("repository", "a/b", frozenset({"pull"}), "plugin")]),
        (["registry:catalog:*"], [Scope("registry", "catalog", frozenset({"*"}))]),
        (["repository:nginx:*"], [Scope("repository", "nginx", frozenset({"*"}))]),
        # repeated scope parameters, in the order asked
        (["repository:a/b:pull", "repository:c/d:push"],
         [Scope("repository", "a/b", frozenset({"pull"})),
          Scope("repository", "c/d", frozenset({"push"}))]),
        # several scopes in one parameter, space-separated
        (["repository:a/b:pull repository:c/d:push"],
         [Scope("repository", "a/b", frozenset({"pull"})),
          Scope("repository", "c/d", frozenset({"push"}))]),
        # a cross-repository mount: pull on the source, pull,push on the target
        (["repository:team/target:pull,push repository:team/source:pull"],
         [Scope("repository", "team/target", frozenset({"pull", "push"})),
          Scope("repository", "team/source", frozenset({"pull"}))]),
        # the same resource asked twice is one entry with every action asked
        (["repository:a/b:pull", "repository:a/b:push", "repository:a/b:pull"],
         [Scope("repository", "a/b", frozenset({"pull", "push"}))]),
        (["repository:a/b:pull repository(plugin):a/b:delete"],
         [Scope("repository", "a/b", frozenset({"pull", "delete"}), "plugin")]),
        # the same name under another type is another resource
        (["repository:catalog:pull registry:catalog:*"],
         [Scope("repository", "catalog", frozenset({"pull"})),
          Scope("registry", "catalog", frozenset({"*"}))]),
        # empty parts between scopes, and empty parameters, are nothing
        ([], []),
        ([""], []),
        (["   "], []),
        (["repository:a/b:pull  ", "", " repository:c/d:pull"],
         [Scope("repository", "a/b", frozenset({"pull"})),
          Scope("repository", "c/d", frozenset({"pull"}))]),
        # an empty action between commas is ignored
        (["repository:a/b:pull,,push,"],
         [Scope("repository", "a/b", frozenset({"pull", "push"}))]),
        # actions the registry does not know are parsed; no one grants them
        (["repository:a/b:pull,frobnicate"],
         [Scope("repository", "a/b", frozenset({"pull", "frobnicate"}))]),
    ],
)
def test_parses(values, expected):
    assert parse_scopes(values) == expected


@pytest.mark.parametrize(
    "value",
    [
        "repository",
        "repository:a/b",
        "repository:a/b:",
        "repository:a/b:,,",
        "repository::pull",
        ":a/b:pull",
        "::",
        ":",
        "Repository:a/b:pull",
        "repo-sitory:a/b:pull",
        "repository():a/b:pull",
        "repository(:a/b:pull",
        "repository(Plugin):a/b:pull",
        "repository(plugin)(x):a/b:pull",
        "repository:a/b:PULL",
        "repository:a/b:pull,pu*sh",
        "repository:a/b:pull;push",
        "repository:a/b:pull\tpush",
        "repository:a/b\x00c:pull",
        "repository:a/b\nc:pull",
        "repository:équipe/app:pull",
        "repository:a/b:pull\u00a0",
        "repository:team/\uff41pp:pull",  # a fullwidth letter a
        "répository:a/b:pull",
    ],
)
def test_refuses(value):
    with pytest.raises(ScopeError):
        parse_scopes([value])


def test_the_error_quotes_the_scope():
    with pytest.raises(ScopeError, match="repository:a/b"):
        parse_scopes(["repository:a/b:pull", "repository:a/b"])


def test_at_most_max_scopes():
    names = [f"repository:team/app{i}:pull" for i in range(MAX_SCOPES + 1)]
    assert len(parse_scopes(names[:MAX_SCOPES])) == MAX_SCOPES
    with pytest.raises(ScopeError, match="too many"):
        parse_scopes(names)
    with pytest.raises(ScopeError, match="too many"):
        parse_scopes([" ".join(names)])
    # duplicates count: a hostile client cannot make the parser loop for free
    with pytest.raises(ScopeError, match="too many"):
        parse_scopes(["repository:a/b:pull"] * (MAX_SCOPES + 1))


def test_a_huge_scope_list_is_refused_quickly():
    hostile = " ".join(["repository:a/b:pull"] * 200_000)  # 4 MB in one parameter
    started = time.perf_counter()
    with pytest.raises(ScopeError):
        parse_scopes([hostile])
    with pytest.raises(ScopeError):
        parse_scopes([hostile] * 1_000)
    with pytest.raises(ScopeError):
        parse_scopes(["repository:a/b:pull"] * 1_000_000)
    assert time.perf_counter() - started < 1.0


def test_a_very_long_scope_is_refused_quickly():
    started = time.perf_counter()
    longest = "repository:" + "a" * (MAX_SCOPE_LENGTH - len("repository::pull")) + ":pull"
    assert len(longest) == MAX_SCOPE_LENGTH
    assert parse_scopes([longest])[0].name == "a" * (MAX_SCOPE_LENGTH - len("repository::pull"))
    for hostile in (
        "repository:" + "a" * 10_000_000 + ":pull",
        "repository(" + "a" * 10_000_000 + "):a:pull",
        "a" * 10_000_000,
        ":" * 10_000_000,
        "repository:a:" + "pull," * 2_000_000,
    ):
        with pytest.raises(ScopeError, match="longer than"):
            parse_scopes([hostile])
    assert time.perf_counter() - started < 1.0


# properties --------------------------------------------------------------------------------

ALNUM = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=8)
TYPES = ALNUM
CLASSES = st.none() | ALNUM
# distribution/reference: component := alnum (separator alnum)*, separator := [._]|__|-+
COMPONENTS = st.builds(
    lambda first, rest: first + "".join(separator + part for separator, part in rest),
    ALNUM, st.lists(st.tuples(st.sampled_from([".", "_", "__", "-", "--"]), ALNUM), max_size=2),
)
PATHS = st.lists(COMPONENTS, min_size=1, max_size=4).map("/".join)
HOSTS = st.builds(
    lambda labels, port: ".".join(labels) + ("" if port is None else f":{port}") + "/",
    st.lists(ALNUM, min_size=1, max_size=3), st.none() | st.integers(1, 65535),
)
# anything the grammar-agnostic parser must keep as a name: printable ASCII without spaces
LOOSE_NAMES = st.text(alphabet=string.ascii_letters + string.digits + string.punctuation,
                      min_size=1, max_size=100)
ACTION_SETS = st.frozensets(st.sampled_from(ACTIONS), min_size=1)


@st.composite
def registry_scopes(draw: st.DrawFn) -> Scope:
    host = draw(st.just("") | HOSTS)
    return Scope(draw(TYPES), host + draw(PATHS), draw(ACTION_SETS), draw(CLASSES))


@given(registry_scopes())
def test_well_formed_scopes_round_trip(scope):
    assert parse_scopes([scope_text(scope)]) == [scope]


@given(TYPES, LOOSE_NAMES, ACTION_SETS)
def test_the_name_is_everything_between_the_type_and_the_last_colon(resource_type, name,
                                                                      actions):
    parsed = parse_scopes([f"{resource_type}:{name}:{','.join(sorted(actions))}"])
    assert parsed == [Scope(resource_type, name, actions)]


@given(st.lists(registry_scopes(), max_size=MAX_SCOPES), st.booleans())
def test_a_list_of_scopes_is_merged_per_resource(scopes, one_parameter):
    texts = [scope_text(s) for s in scopes]
    parsed = parse_scopes([" ".join(texts)] if one_parameter else texts)

    resources = list(dict.fromkeys((s.type, s.name) for s in scopes))
    assert [(s.type, s.name) for s in parsed] == resources
    for scope in parsed:
        asked = [s for s in scopes if (s.type, s.name) == (scope.type, scope.name)]
        assert scope.actions == frozenset().union(*(s.actions for s in asked))
        assert scope.resource_class == next(
            (s.resource_class for s in asked if s.resource_class), None)


SIMPLE_SCOPES = st.builds("repository:team/app{}:{}".format, st.integers(0, 99),
                          st.sampled_from(ACTIONS))


@given(st.lists(SIMPLE_SCOPES, min_size=MAX_SCOPES + 1, max_size=4 * MAX_SCOPES),
       st.integers(1, 8))
def test_more_than_max_scopes_is_an_error(texts, per_parameter):
    values = [" ".join(texts[i:i + per_parameter]) for i in range(0, len(texts), per_parameter)]
    with pytest.raises(ScopeError, match="too many"):
        parse_scopes(values)


@given(st.lists(st.text(max_size=300), max_size=10))
def test_any_text_parses_or_raises_scope_error(values):
    try:
        parsed = parse_scopes(values)
    except ScopeError:
        return
    for scope in parsed:
        assert scope.type
        assert scope.name
        assert scope.actions
        assert scope.name.isascii()
        assert scope.name.isprintable()
        assert " " not in scope.name
        assert all(a == "*" or (a.isascii() and a.isalpha() and a.islower())
                   for a in scope.actions)


@given(st.lists(st.text(alphabet=st.sampled_from("repository(plugin):/*,pulsh é\x00 \t"),
                        max_size=200), max_size=10))
def test_scope_shaped_noise_parses_or_raises_scope_error(values):
    with contextlib.suppress(ScopeError):
        parse_scopes(values)


@given(TYPES, st.text(min_size=1, max_size=50).filter(lambda s: not s.isascii()), ACTION_SETS)
def test_non_ascii_names_are_refused(resource_type, name, actions):
    text = f"{resource_type}:{name.replace(' ', '_')}:{','.join(actions)}"
    with pytest.raises(ScopeError):
        parse_scopes([text])


@given(TYPES, st.integers(MAX_SCOPE_LENGTH + 1, 50_000), ACTION_SETS)
@settings(max_examples=20)
def test_names_past_the_length_limit_are_refused(resource_type, length, actions):
    with pytest.raises(ScopeError, match="longer than"):
        parse_scopes([f"{resource_type}:{'a' * length}:{','.join(actions)}"])


@given(st.lists(registry_scopes(), min_size=1, max_size=5))
def test_parsing_is_idempotent(scopes):
    once = parse_scopes([scope_text(s) for s in scopes])
    assert parse_scopes([scope_text(s) for s in once]) == once
