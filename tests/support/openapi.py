"""The OpenAPI document (``schemas/openapi.yaml``) as an oracle for responses in any test.

``assert_matches_openapi(response, "/api/v1/tags", "get")`` checks that the status is documented
for the operation, the Content-Type is one the response documents, required headers are there,
and the body validates against the documented schema. Validation is jsonschema's, with OpenAPI
3.1 schemas read as draft 2020-12 (the dialect 3.1 uses) and ``$ref`` into the JSON Schema files
beside the document (``activity.schema.json`` is draft-07) resolved from ``schemas/``.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import httpx
import yaml
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from services.core.schemas import SCHEMA_DIR

__all__ = ["OPENAPI_PATH", "assert_matches_openapi", "assert_matches_schema", "load_openapi"]

OPENAPI_PATH = SCHEMA_DIR / "openapi.yaml"
_DOCUMENT_URI = OPENAPI_PATH.as_uri()


def load_openapi() -> dict[str, Any]:
    """The document, parsed; a new dict each call."""
    document = yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def assert_matches_openapi(response: httpx.Response, path: str, method: str) -> None:
    """Fail unless ``response`` is one the document describes for ``method path``.

    ``path`` is the document's path template (``/api/v1/tags``), not the request URL.
    """
    __tracebackhide__ = True
    document = _document()
    where = f"{method.upper()} {path} → {response.status_code}"
    operation = document["paths"].get(path, {}).get(method.lower())
    assert operation is not None, f"{method.upper()} {path} is not in {OPENAPI_PATH.name}"
    status = str(response.status_code)
    assert status in operation["responses"], (
        f"{where}: status not documented (documented: {', '.join(operation['responses'])});"
        f" body: {response.text[:500]}"
    )
    pointer, described = _follow(
        document, f"/paths/{_escape(path)}/{method.lower()}/responses/{status}"
    )
    for name, header in described.get("headers", {}).items():
        if header.get("required"):
            assert name in response.headers, f"{where}: required header {name} missing"
    content = described.get("content", {})
    if not content:
        assert not response.content, f"{where}: documented without a body, got {response.text!r}"
        return
    media_type = response.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    assert media_type in content, (
        f"{where}: Content-Type {media_type!r} not documented (documented: {', '.join(content)})"
    )
    if "schema" not in content[media_type]:
        return
    instance = response.json() if _is_json(media_type) else response.text
    schema_pointer = f"{pointer}/content/{_escape(media_type)}/schema"
    _assert_valid(instance, f"{_DOCUMENT_URI}#{schema_pointer}", where)


def assert_matches_schema(instance: Any, component: str) -> None:
    """Fail unless ``instance`` validates against ``#/components/schemas/<component>``."""
    __tracebackhide__ = True
    _assert_valid(instance, f"{_DOCUMENT_URI}#/components/schemas/{component}", component)


def _assert_valid(instance: Any, uri: str, where: str) -> None:
    __tracebackhide__ = True
    validator = Draft202012Validator({"$ref": uri}, registry=_registry())
    errors = sorted(validator.iter_errors(instance), key=lambda error: list(error.path))
    assert not errors, f"{where}: body does not match the document:\n" + "\n".join(
        f"  {error.json_path}: {error.message}" for error in errors
    )


@cache
def _document() -> dict[str, Any]:
    return load_openapi()


@cache
def _registry() -> Registry[Any]:
    registry: Registry[Any] = Registry(retrieve=_retrieve)  # type: ignore[call-arg]
    return registry.with_resources([(_DOCUMENT_URI, DRAFT202012.create_resource(_document()))])


def _retrieve(uri: str) -> Resource[Any]:
    """A JSON Schema file from ``schemas/``, found by its file URI; nothing from elsewhere."""
    path = Path(url2pathname(urlsplit(uri).path)).resolve()
    if urlsplit(uri).scheme != "file" or not path.is_relative_to(SCHEMA_DIR):
        raise ValueError(f"{uri}: only files in {SCHEMA_DIR} are referenced")
    contents = json.loads(path.read_text(encoding="utf-8"))
    return Resource.from_contents(contents, default_specification=DRAFT202012)


def _follow(document: dict[str, Any], pointer: str) -> tuple[str, dict[str, Any]]:
    """The object at ``pointer`` after following local ``$ref``s, and where it really is."""
    node = _at(document, pointer)
    while "$ref" in node:
        reference = node["$ref"]
        assert reference.startswith("#/"), f"only local $ref expected at {pointer}: {reference}"
        pointer = reference[1:]
        node = _at(document, pointer)
    return pointer, node


def _at(document: dict[str, Any], pointer: str) -> dict[str, Any]:
    node: Any = document
    for token in pointer.removeprefix("/").split("/"):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    assert isinstance(node, dict)
    return node


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")
