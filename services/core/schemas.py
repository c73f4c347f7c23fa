"""The JSON Schemas in the repository's ``schemas/`` folder, read once and compiled once.

``schemas/`` sits beside ``services/`` rather than inside the package, so this module is the one
place that knows where it is. Schema files are named ``*.schema.json`` (other JSON there, such as
examples, is left alone) and need no ``$id``: each is registered under its own file URI, so a
relative ``"$ref": "events/registry-event.schema.json"`` resolves the way it reads on disk. A
file that does declare an ``$id`` is reachable under that URI too.

Two views of each schema:

- ``validator(name)``: the ``jsonschema`` validator, the authority, with error messages.
- ``predicate(name)``: the same yes/no answer compiled to plain Python closures, for hot paths.
  ``jsonschema`` spends ~100 µs on one registry event; the closures spend a few. Only the
  keywords below are compiled; a schema using any other keyword silently gets
  ``validator(name).is_valid`` instead, so the predicate is never laxer than the schema.
  Callers that need the reason for a rejection ask ``validator(name)``.

``format`` is an annotation here, not an assertion (as in ``jsonschema`` by default): schemas
that need a shape enforced, such as timestamps, say so with ``pattern``.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

# jsonschema ships no type information and types-jsonschema is not a dependency (yet).
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.protocols import Validator  # type: ignore[import-untyped]
from jsonschema.validators import validator_for  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

if TYPE_CHECKING:
    from referencing._core import Resolver

__all__ = ["SCHEMA_DIR", "load_schema", "predicate", "validator"]

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"

Check: TypeAlias = Callable[[Any], bool]


def load_schema(name: str) -> dict[str, Any]:
    """Return a copy of the schema stored at ``schemas/<name>``, e.g. ``"events/x.schema.json"``."""
    return copy.deepcopy(_contents(name))


@cache
def validator(name: str) -> Validator:
    """Return the ``jsonschema`` validator for ``schemas/<name>``; one shared instance per name."""
    schema = _rooted(name)
    cls = validator_for(schema, default=Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema, registry=_registry())


@cache
def predicate(name: str) -> Check:
    """Return a fast function answering what ``validator(name).is_valid`` answers."""
    is_valid: Check = validator(name).is_valid
    schema = _rooted(name)
    if schema.get("$schema", _DRAFT_2020_12) != _DRAFT_2020_12:
        return is_valid
    try:
        return _compile(schema, _registry().resolver(), frozenset())
    except _UnsupportedError:
        return is_valid


@cache
def _contents(name: str) -> dict[str, Any]:
    contents = json.loads(_path(name).read_text(encoding="utf-8"))
    if not isinstance(contents, dict):
        raise TypeError(f"schemas/{name}: a schema file must hold a JSON object")
    return contents


def _path(name: str) -> Path:
    path = (SCHEMA_DIR / name).resolve()
    if not path.is_relative_to(SCHEMA_DIR):
        raise ValueError(f"schema name {name!r} points outside {SCHEMA_DIR}")
    return path


def _rooted(name: str) -> dict[str, Any]:
    """The schema with a base URI, so that its relative ``$ref`` values resolve."""
    schema = _contents(name)
    return schema if "$id" in schema else {"$id": _path(name).as_uri(), **schema}


@cache
def _registry() -> Registry[Any]:
    resources: list[tuple[str, Resource[Any]]] = []
    for path in sorted(SCHEMA_DIR.rglob("*.schema.json")):
        resource = Resource.from_contents(
            _contents(path.relative_to(SCHEMA_DIR).as_posix()),
            default_specification=DRAFT202012,
        )
        resources.append((path.as_uri(), resource))
        if (declared := resource.id()) is not None:
            resources.append((declared, resource))
    return Registry().with_resources(resources).crawl()


# --- the compiled predicate -------------------------------------------------------------------
#
# Each keyword compiles to a check that, like the JSON Schema keyword, passes instances of types
# it does not apply to. Type tests mirror jsonschema's draft 2020-12 type checker (a bool is not
# a number; 1.0 is an integer).

_DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"

_ANNOTATIONS = frozenset(
    {
        "$schema", "$id", "$defs", "$comment", "title", "description", "format", "default",
        "examples", "deprecated", "readOnly", "writeOnly",
    }
)  # fmt: skip


class _UnsupportedError(Exception):
    """The schema uses something the compiler does not handle; jsonschema answers instead."""


def _is_number(instance: Any) -> bool:
    return isinstance(instance, int | float) and not isinstance(instance, bool)


def _is_integer(instance: Any) -> bool:
    if isinstance(instance, float):
        return instance.is_integer()
    return isinstance(instance, int) and not isinstance(instance, bool)


_TYPES: Mapping[str, Check] = {
    "object": lambda instance: isinstance(instance, dict),
    "array": lambda instance: isinstance(instance, list),
    "string": lambda instance: isinstance(instance, str),
    "boolean": lambda instance: isinstance(instance, bool),
    "null": lambda instance: instance is None,
    "number": _is_number,
    "integer": _is_integer,
}


def _compile(schema: Any, resolver: Resolver[Any], refs: frozenset[int]) -> Check:
    """Compile one (sub)schema; ``refs`` holds the ``$ref`` targets on the way here."""
    if schema is True or schema is False:
        return lambda _: bool(schema)
    if not isinstance(schema, dict):
        raise _UnsupportedError(f"not a schema: {schema!r}")
    if unknown := schema.keys() - _KEYWORDS.keys() - _ANNOTATIONS:
        raise _UnsupportedError(f"keywords {sorted(unknown)}")
    if "$id" in schema:
        resolver = resolver.in_subresource(DRAFT202012.create_resource(schema))
    checks = [
        _KEYWORDS[keyword](value, schema, resolver, refs)
        for keyword, value in schema.items()
        if keyword in _KEYWORDS
    ]
    if len(checks) == 1:
        return checks[0]

    def check(instance: Any) -> bool:
        # Loops, not all(<genexpr>), here and in _properties: a generator per call costs ~half
        # of the whole check.
        for each in checks:  # noqa: SIM110 - see above
            if not each(instance):
                return False
        return True

    return check


def _ref(value: str, _: dict[str, Any], resolver: Resolver[Any], refs: frozenset[int]) -> Check:
    resolved = resolver.lookup(value)
    if id(resolved.contents) in refs:
        raise _UnsupportedError(f"recursive $ref {value!r}")
    return _compile(resolved.contents, resolved.resolver, refs | {id(resolved.contents)})


def _type(value: str | list[str], *_: Any) -> Check:
    if isinstance(value, str):
        return _TYPES[value]
    tests = [_TYPES[name] for name in value]
    return lambda instance: any(test(instance) for test in tests)


def _enum(value: list[Any], *_: Any) -> Check:
    # Strings only: jsonschema's equality rules for numbers and booleans are not mirrored here.
    if not all(isinstance(each, str) for each in value):
        raise _UnsupportedError("enum with non-string members")
    allowed = frozenset(value)
    return lambda instance: isinstance(instance, str) and instance in allowed


def _not(value: Any, _: dict[str, Any], resolver: Resolver[Any], refs: frozenset[int]) -> Check:
    sub = _compile(value, resolver, refs)
    return lambda instance: not sub(instance)


def _required(value: list[str], *_: Any) -> Check:
    return lambda instance: not isinstance(instance, dict) or all(k in instance for k in value)


def _properties(
    value: dict[str, Any], _: dict[str, Any], resolver: Resolver[Any], refs: frozenset[int]
) -> Check:
    compiled = [(name, _compile(sub, resolver, refs)) for name, sub in value.items()]

    def check(instance: Any) -> bool:
        if not isinstance(instance, dict):
            return True
        for name, sub in compiled:  # noqa: SIM110 - hot path, see _compile
            if name in instance and not sub(instance[name]):
                return False
        return True

    return check


def _additional_properties(
    value: Any, schema: dict[str, Any], resolver: Resolver[Any], refs: frozenset[int]
) -> Check:
    if "patternProperties" in schema:
        raise _UnsupportedError("patternProperties")
    declared = frozenset(schema.get("properties", ()))
    sub = _compile(value, resolver, refs)

    def check(instance: Any) -> bool:
        if not isinstance(instance, dict):
            return True
        return all(sub(item) for key, item in instance.items() if key not in declared)

    return check


def _items(value: Any, _: dict[str, Any], resolver: Resolver[Any], refs: frozenset[int]) -> Check:
    sub = _compile(value, resolver, refs)
    return lambda instance: not isinstance(instance, list) or all(map(sub, instance))


def _min_items(value: int, *_: Any) -> Check:
    return lambda instance: not isinstance(instance, list) or len(instance) >= value


def _min_length(value: int, *_: Any) -> Check:
    return lambda instance: not isinstance(instance, str) or len(instance) >= value


def _minimum(value: float, *_: Any) -> Check:
    return lambda instance: not _is_number(instance) or instance >= value


def _pattern(value: str, *_: Any) -> Check:
    search = re.compile(value).search
    return lambda instance: not isinstance(instance, str) or search(instance) is not None


_KEYWORDS: Mapping[str, Callable[[Any, dict[str, Any], Resolver[Any], frozenset[int]], Check]] = {
    "$ref": _ref,
    "type": _type,
    "enum": _enum,
    "not": _not,
    "required": _required,
    "properties": _properties,
    "additionalProperties": _additional_properties,
    "items": _items,
    "minItems": _min_items,
    "minLength": _min_length,
    "minimum": _minimum,
    "pattern": _pattern,
}
