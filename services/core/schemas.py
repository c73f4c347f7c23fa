"""The JSON Schemas in the repository's ``schemas/`` folder, and their validators (jsonschema-rs).

``schemas/`` sits beside ``services/`` rather than inside the package, so this module is the one
place that knows where it is. Schemas are draft-07.

References between files: files declare no ``$id``; ``load_schema`` sets each one's to its file
URI, so a relative ``"$ref": "events/registry-event.schema.json"`` resolves the way it reads on
disk, and the validator fetches the target through a retriever that only reads inside
``schemas/`` (nothing is fetched from the network). Resolving references is the library's job,
so schemas are not inlined into each other.

jsonschema-rs (Rust) validates a registry envelope in about a quarter of the time the
fastjsonschema-compiled Python took, and the webhook validates every envelope. ``format`` is an
annotation, not an assertion, as ``jsonschema`` applies it by default (schemas that need a shape
enforced, such as timestamps, say so with ``pattern``); ``pattern`` is ECMA 262, where ``$``
matches only at the very end.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import jsonschema_rs

__all__ = ["SCHEMA_DIR", "SchemaViolation", "load_schema", "validator"]

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def load_schema(name: str) -> dict[str, Any]:
    """Return the schema at ``schemas/<name>`` (e.g. ``"events/x.schema.json"``), a new dict
    each call, with ``$id`` set to the file's URI."""
    path = (SCHEMA_DIR / name).resolve()
    if not path.is_relative_to(SCHEMA_DIR):
        raise ValueError(f"schema name {name!r} points outside {SCHEMA_DIR}")
    schema = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(schema, dict):
        raise TypeError(f"schemas/{name}: a schema file must hold a JSON object")
    return {**schema, "$id": path.as_uri()}


class SchemaViolation(ValueError):
    """Data that a schema refuses, at its first violation.

    ``path`` leads to the offending value (``("events", 3, "target")``), ``where`` spells it
    the way error messages do (``events[3].target``; empty at the root), ``keyword`` is the
    schema keyword that failed (``pattern``, ``required``…) and ``message`` says what is wrong,
    quoting the value (``"upload" is not one of ["push", …]``).
    """

    def __init__(self, path: tuple[str | int, ...], keyword: str, message: str) -> None:
        self.path = path
        self.where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}"
                             for part in path).removeprefix(".")
        self.keyword = keyword
        self.message = message
        super().__init__(f"{self.where or 'data'}: {message}")


@cache
def validator(name: str) -> Callable[[Any], Any]:
    """Return the validator for ``schemas/<name>``, one per name.

    It returns valid data unchanged and raises ``SchemaViolation`` at the first violation,
    always the same one for the same data.
    """
    compiled = jsonschema_rs.Draft7Validator(
        load_schema(name), retriever=_load_uri, validate_formats=False
    )

    def validate(instance: Any) -> Any:
        if compiled.is_valid(instance):  # the common case, and cheaper than collecting errors
            return instance
        error = next(iter(compiled.iter_errors(instance)))
        path = tuple(error.instance_path)
        if type(error.kind).__name__ == "FalseSchema":
            # A property the schema forbids ("synthetic": false): the library's wording,
            # 'False schema does not allow true', means nothing to whoever sent it.
            message = f"{json.dumps(error.instance)} is not allowed here"
            raise SchemaViolation(path, "false", message)
        keyword = str(error.schema_path[-1]) if error.schema_path else ""
        raise SchemaViolation(path, keyword, error.message)

    return validate


def _load_uri(uri: str) -> dict[str, Any]:
    # relative_to raises ValueError for a path outside schemas/; load_schema catches any "..".
    parts = urlsplit(uri)
    if parts.scheme != "file":
        raise ValueError(f"schemas may only refer to files in {SCHEMA_DIR}, not {uri}")
    return load_schema(Path(url2pathname(parts.path)).relative_to(SCHEMA_DIR).as_posix())
