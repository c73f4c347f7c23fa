"""`dockyard serve --service …` values → which services run, with which parts (pure)."""

from __future__ import annotations

import pytest

from services.core.errors import Invalid
from services.selection import plan_services, valid_values
from services.server import plan

KNOWN = ["auth", "ingest", "search", "portal"]
NEEDS = {"ingest": ["auth"], "search": ["auth"], "portal": ["auth", "ingest", "search"]}
BOTH = {"api", "consumers"}
API = {"api"}
CONSUMERS = {"consumers"}
NONE: set[str] = set()


@pytest.mark.parametrize(("requested", "expected"), [
    (None, {"auth": BOTH, "ingest": BOTH, "search": BOTH, "portal": BOTH}),
    ([], {"auth": BOTH, "ingest": BOTH, "search": BOTH, "portal": BOTH}),
    (["auth"], {"auth": BOTH}),
    # Ingest alone still opens auth (who calls, service tokens), without its routes.
    (["ingest"], {"auth": NONE, "ingest": BOTH}),
    (["ingest-api"], {"auth": NONE, "ingest": API}),
    (["ingest-consumers"], {"auth": NONE, "ingest": CONSUMERS}),
    (["ingest-api", "ingest-consumers"], {"auth": NONE, "ingest": BOTH}),
    (["ingest-api,ingest-consumers"], {"auth": NONE, "ingest": BOTH}),
    (["auth,ingest-consumers"], {"auth": BOTH, "ingest": CONSUMERS}),
    ([" auth , ingest ", ""], {"auth": BOTH, "ingest": BOTH}),
    (["ingest", "ingest"], {"auth": NONE, "ingest": BOTH}),
    # Whatever the portal reads through is opened read-side: no routes, no consumers.
    (["portal"], {"auth": NONE, "ingest": NONE, "search": NONE, "portal": BOTH}),
    (["portal", "search-consumers"],
     {"auth": NONE, "ingest": NONE, "search": CONSUMERS, "portal": BOTH}),
])
def test_plan(requested: list[str] | None, expected: dict[str, set[str]]) -> None:
    planned = plan_services(requested, KNOWN, NEEDS)
    assert {name: set(parts) for name, parts in planned.items()} == expected


def test_what_a_service_needs_comes_before_it() -> None:
    assert list(plan_services(["portal"], KNOWN, NEEDS)) == ["auth", "ingest", "search", "portal"]
    assert list(plan_services(["ingest", "auth"], KNOWN, NEEDS)) == ["auth", "ingest"]


@pytest.mark.parametrize("value", ["scanner", "ingest-worker", "-api", "INGEST", "auth-"])
def test_an_unknown_name_is_refused_with_every_valid_one(value: str) -> None:
    with pytest.raises(Invalid) as raised:
        plan_services([value], KNOWN, NEEDS)
    assert raised.value.code == "unknown_service"
    assert repr(value) in raised.value.message
    for valid in ("auth", "auth-api", "ingest-consumers", "portal-api"):
        assert valid in raised.value.message


def test_valid_values() -> None:
    assert valid_values(["auth"]) == ["auth", "auth-api", "auth-consumers"]


def test_a_cycle_or_a_missing_need_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="cycle: a -> b -> a"):
        plan_services(["a"], ["a", "b"], {"a": ["b"], "b": ["a"]})
    with pytest.raises(ValueError, match="needs 'gone'"):
        plan_services(["a"], ["a"], {"a": ["gone"]})


def test_every_registered_service_plans_with_auth_first() -> None:
    for name, planned in ((n, plan([n])) for n in plan()):
        assert next(iter(planned)) == "auth", name
        assert set(planned[name]) == BOTH
