"""The JSON Schemas in the repository's ``schemas/`` folder, compiled to Python by fastjsonschema.

``schemas/`` sits beside ``services/`` rather than inside the package, so this module is the one
place that knows where it is. Schemas are draft-07, the newest draft fastjsonschema implements.

References between files: files declare no ``$id``; ``load_schema`` sets each one's to its file
URI, so a relative ``"$ref": "events/registry-event.schema.json"`` resolves the way it reads on
disk, and fastjsonschema fetches the target through a ``file`` handler that only reads inside
``schemas/`` (without a handler it would fetch with urllib, from anywhere). This was chosen over
inlining the referenced schema into the referring one, which would mean rewriting the inlined
schema's own ``#/definitions/…`` references: resolving references is the library's job.

Two options differ from fastjsonschema's defaults, and match JSON Schema as ``jsonschema``
applies it by default: ``format`` is an annotation, not an assertion (schemas that need a shape
enforced, such as timestamps, say so with ``pattern``); and ``default`` values are not written
into the validated data, which callers store as received.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import fastjsonschema

__all__ = ["SCHEMA_DIR", "load_schema", "validator"]

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


@cache
def validator(name: str) -> Callable[[Any], Any]:
    """Return the compiled validator for ``schemas/<name>``, one per name.

    It returns valid data unchanged and raises ``fastjsonschema.JsonSchemaValueException`` at
    the first violation: ``.name`` is where (``data.events[3].target``), ``.message`` what.
    """
    validate: Callable[[Any], Any] = fastjsonschema.compile(
        load_schema(name),
        handlers={"file": _load_uri},
        use_default=False,
        use_formats=False,
    )
    return validate


def _load_uri(uri: str) -> dict[str, Any]:
    # relative_to raises ValueError for a path outside schemas/; load_schema catches any "..".
    return load_schema(Path(url2pathname(urlsplit(uri).path)).relative_to(SCHEMA_DIR).as_posix())
