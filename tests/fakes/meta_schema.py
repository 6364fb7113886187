"""Validate message bodies against Meta's own OpenAPI description of the Cloud API.

The description (`business-messaging-api_v23.0.yaml`, kept in `third_party/meta/`) is the most
authoritative machine-readable statement of what Meta accepts, so tests check what the bot sends
against its `components/schemas/Message`. Read literally by a JSON-schema validator it is wrong
in known ways, which `prepare_schemas` corrects:

- `allOf: [Base, {additionalProperties: false, ...}]` would count every base property as
  "additional": each `allOf` is merged into one object schema.
- `discriminator` (ignored by JSON Schema) is turned into an `if`/`then` per mapped value, so a
  body is checked against the schema its `type` names, with readable errors.
- The template button `index` pattern `^[2-6, 11-14]$` refuses "0": it is dropped.
- v23.0 predates business-scoped user ids: the 2026 top-level `recipient` field (a BSUID, used
  instead of `to`) is added to the base message properties, and one of `to` / `recipient` is
  required instead of `to`.

The YAML is about 1 MB, so it is parsed once per process (CSafeLoader) and the validator cached.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, ValidationError
from jsonschema.exceptions import best_match
from referencing import Registry
from referencing.jsonschema import DRAFT202012

#: The project's copy of Meta's description (MIT, licence beside it in third_party/meta/).
OPENAPI_PATH = (
    Path(__file__).resolve().parents[2] / "third_party/meta/business-messaging-api_v23.0.yaml"
)
DOCUMENT_URI = "urn:meta:business-messaging-api"
SCHEMA_REF_PREFIX = "#/components/schemas/"
BROKEN_INDEX_PATTERN = "^[2-6, 11-14]$"

_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "dependentSchemas")
_SCHEMA_VALUES = (
    "items",
    "additionalProperties",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
)
_SCHEMA_LISTS = ("allOf", "oneOf", "anyOf", "prefixItems")
_ANNOTATIONS = ("description", "example", "examples", "title", "default")


@functools.lru_cache(maxsize=4)
def load_openapi(path: Path = OPENAPI_PATH) -> dict[str, Any]:
    """Parse the OpenAPI YAML (cached per path). Raises FileNotFoundError when it is absent."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open("rb") as stream:
        document = yaml.load(stream, Loader=loader)  # a safe loader (C or pure)
    if not isinstance(document, dict):
        raise ValueError(f"{path} is not an OpenAPI document")
    return document


def prepare_schemas(document: Mapping[str, Any]) -> dict[str, Any]:
    """`components/schemas` rewritten for a JSON-schema validator (see the module docstring)."""
    raw = dict(document["components"]["schemas"])
    raw["BaseMessageProperties"] = _with_bsuid_recipient(raw["BaseMessageProperties"])
    preparer = _Preparer(raw)
    return {name: preparer.schema(schema) for name, schema in raw.items()}


class MessageSchema:
    """A validator for request bodies of `POST /{phone_number_id}/messages`."""

    def __init__(self, document: Mapping[str, Any], schema_name: str = "Message") -> None:
        prepared = {"components": {"schemas": prepare_schemas(document)}}
        registry: Registry[Any] = Registry().with_resource(
            DOCUMENT_URI, DRAFT202012.create_resource(prepared)
        )
        self.schema_name = schema_name
        self._validator = Draft202012Validator(
            {"$ref": f"{DOCUMENT_URI}{SCHEMA_REF_PREFIX}{schema_name}"}, registry=registry
        )

    def errors(self, body: object) -> list[str]:
        """Every violation, as `path: message` lines; empty when the body is valid."""
        return [_describe(error) for error in self._validator.iter_errors(body)]

    def first_error(self, body: object) -> str | None:
        """The most relevant violation (jsonschema's best match), or None when valid."""
        error = best_match(self._validator.iter_errors(body))
        return None if error is None else _describe(error)

    def validate(self, body: object) -> None:
        """Raise `jsonschema.ValidationError` (the best match) when the body is invalid."""
        error = best_match(self._validator.iter_errors(body))
        if error is not None:
            raise error

    def is_valid(self, body: object) -> bool:
        return bool(self._validator.is_valid(body))


@functools.lru_cache(maxsize=4)
def load_message_schema(path: Path = OPENAPI_PATH) -> MessageSchema:
    """The cached `Message` validator. Raises FileNotFoundError when the YAML is absent."""
    return MessageSchema(load_openapi(path))


def message_schema_or_none(path: Path = OPENAPI_PATH) -> MessageSchema | None:
    """The cached `Message` validator, or None when the OpenAPI file is not there."""
    if not path.is_file():
        return None
    return load_message_schema(path)


def _describe(error: ValidationError) -> str:
    location = "/".join(str(part) for part in error.absolute_path) or "(body)"
    return f"{location}: {error.message}"


def _with_bsuid_recipient(base: Mapping[str, Any]) -> dict[str, Any]:
    patched = dict(base)
    properties = dict(patched.get("properties", {}))
    properties["recipient"] = {
        "type": "string",
        "description": "Business-scoped user id (BSUID) or parent BSUID; used instead of `to`.",
    }
    patched["properties"] = properties
    patched["required"] = [name for name in patched.get("required", []) if name != "to"]
    patched["anyOf"] = [{"required": ["to"]}, {"required": ["recipient"]}]
    return patched


class _Preparer:
    """Rewrites raw OpenAPI schemas: merged `allOf`s, resolved discriminators."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self._raw = raw

    def schema(self, node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        if "allOf" in node:
            node = self._merge(node)
        if "discriminator" in node:
            node = self._dispatch(node)
        if node.get("pattern") == BROKEN_INDEX_PATTERN:
            node = {key: value for key, value in node.items() if key != "pattern"}
        return {key: self._children(key, value) for key, value in node.items()}

    def _children(self, key: str, value: Any) -> Any:
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            return {name: self.schema(sub) for name, sub in value.items()}
        if key in _SCHEMA_VALUES:
            return self.schema(value)
        if key in _SCHEMA_LISTS and isinstance(value, list):
            return [self.schema(sub) for sub in value]
        return value

    def _flatten(self, member: Mapping[str, Any]) -> dict[str, Any]:
        """An `allOf` member as a plain schema: `$ref`s inlined, nested `allOf`s merged, and
        without the discriminator (a base's discriminator points back at its subtypes)."""
        ref = member.get("$ref")
        if isinstance(ref, str) and ref.startswith(SCHEMA_REF_PREFIX):
            target = self._raw[ref.removeprefix(SCHEMA_REF_PREFIX)]
            siblings = {key: value for key, value in member.items() if key != "$ref"}
            member = {**target, **siblings} if siblings else target
        if "allOf" in member:
            member = self._merge(member)
        return {key: value for key, value in member.items() if key != "discriminator"}

    def _merge(self, node: Mapping[str, Any]) -> dict[str, Any]:
        members = [self._flatten(member) for member in node["allOf"]]
        siblings = {key: value for key, value in node.items() if key != "allOf"}
        if siblings:
            members.append(self._flatten(siblings))
        merged: dict[str, Any] = {}
        residual: list[dict[str, Any]] = []
        for member in members:
            for key, value in member.items():
                if key == "properties":
                    properties = merged.setdefault("properties", {})
                    for name, sub in value.items():
                        old = properties.get(name)
                        properties[name] = sub if old in (None, sub) else {"allOf": [old, sub]}
                elif key == "required":
                    required = merged.setdefault("required", [])
                    required.extend(name for name in value if name not in required)
                elif key == "additionalProperties" and value is False:
                    merged[key] = False
                elif key not in merged:
                    merged[key] = value
                elif merged[key] != value and key not in _ANNOTATIONS:
                    if key == "additionalProperties" and merged[key] is False:
                        continue
                    residual.append({key: value})
        if residual:
            merged["allOf"] = residual
        return merged

    def _dispatch(self, node: Mapping[str, Any]) -> dict[str, Any]:
        discriminator = node["discriminator"]
        name = discriminator["propertyName"]
        mapping: Mapping[str, str] = discriminator.get("mapping") or {}
        base = {key: value for key, value in node.items() if key != "discriminator"}
        if not mapping:
            return base
        base.pop("oneOf", None)
        base.pop("anyOf", None)
        base.setdefault("type", "object")
        base["required"] = [*(r for r in base.get("required", []) if r != name), name]
        properties = dict(base.get("properties", {}))
        allowed = {"enum": list(mapping)}
        old = properties.get(name)
        properties[name] = allowed if old is None else {"allOf": [old, allowed]}
        base["properties"] = properties
        branches = [
            {"if": {"properties": {name: {"const": value}}}, "then": {"$ref": target}}
            for value, target in mapping.items()
        ]
        base["allOf"] = [*base.get("allOf", []), *branches]
        return base
