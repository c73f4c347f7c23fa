"""Which services a ``dockyard serve`` process runs, and which of their parts.

A service has two parts: its HTTP routes (``api``) and its background work (``consumers``: its
consumer groups on the event log and its periodic jobs, such as ingest's sync). ``--service``
takes service names, repeated or comma-separated:

- ``ingest``            both parts (the default for every service when none is named);
- ``ingest-api``        the routes only, e.g. webhook and read-API replicas behind a balancer;
- ``ingest-consumers``  the consumer groups and jobs only (``/metrics`` and the health
  probes still answer, for probes and scraping: services/operations.py).

A service that another one reads through (``NEEDS``, e.g. every service authenticates callers
through auth's module) is opened in the same process with neither part: its stores and module
API are there, its routes and consumers are not. Pure: the server turns the plan into an app.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

from services.core.errors import Invalid

__all__ = ["ALL_PARTS", "Part", "Plan", "plan_services", "valid_values"]

Part = Literal["api", "consumers"]
ALL_PARTS: frozenset[Part] = frozenset(("api", "consumers"))
_SUFFIXES: dict[str, frozenset[Part]] = {
    "-api": frozenset(("api",)),
    "-consumers": frozenset(("consumers",)),
}

# Service name -> its parts in this process; ordered so that what a service needs comes first.
Plan = dict[str, frozenset[Part]]


def plan_services(
    requested: Iterable[str] | None,
    known: Iterable[str],
    needs: Mapping[str, Iterable[str]],
) -> Plan:
    """The plan for ``--service`` values; None or nothing means every service, whole.

    Raises ``Invalid`` naming the unknown value and every valid one.
    """
    names = list(known)
    wanted: dict[str, frozenset[Part]] = {}
    values = [
        item.strip() for value in (requested or ()) for item in value.split(",") if item.strip()
    ]
    if not values:
        wanted = dict.fromkeys(names, ALL_PARTS)
    for value in values:
        name, parts = _parse(value, names)
        wanted[name] = wanted.get(name, frozenset()) | parts
    plan: Plan = {}
    for name in wanted:
        _add(name, wanted, names, needs, plan, ())
    return plan


def valid_values(known: Iterable[str]) -> list[str]:
    """Every value ``--service`` accepts, for help and error messages."""
    return [f"{name}{suffix}" for name in known for suffix in ("", *_SUFFIXES)]


def _parse(value: str, names: list[str]) -> tuple[str, frozenset[Part]]:
    if value in names:
        return value, ALL_PARTS
    for suffix, parts in _SUFFIXES.items():
        name = value.removesuffix(suffix)
        if name != value and name in names:
            return name, parts
    raise Invalid("unknown_service",
                  f"unknown service {value!r}; valid: {', '.join(valid_values(names))}")


def _add(  # noqa: PLR0917 - a private recursive helper; its arguments are its state
    name: str,
    wanted: Mapping[str, frozenset[Part]],
    names: list[str],
    needs: Mapping[str, Iterable[str]],
    plan: Plan,
    path: tuple[str, ...],
) -> None:
    if name in plan:
        return
    if name in path:
        raise ValueError(f"services need each other in a cycle: {' -> '.join((*path, name))}")
    for needed in needs.get(name, ()):
        if needed not in names:
            raise ValueError(f"service {name!r} needs {needed!r}, which is not a service")
        _add(needed, wanted, names, needs, plan, (*path, name))
    plan[name] = wanted.get(name, frozenset())
