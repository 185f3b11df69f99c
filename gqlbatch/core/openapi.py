"""An upstream's OpenAPI document (3.0 or 3.1, JSON or YAML), and what it says a sub-request
must be before it is sent (issue 14, "validation first"). Pure: the text is read elsewhere.

- A document is parsed (PyYAML, which reads JSON too) and checked
  (openapi-spec-validator) once, at start-up; any problem is one ConfigError line.
- An item is matched to an operation by its method and its path against the document's path
  templates (`/users/{id}`); placeholders stand for path segments.
- Before anything runs: a request body is checked against its operation's JSON schema
  (openapi-schema-validator, `$ref`s resolved in the document by `referencing`), each error
  with its JSON pointer; a value that is a placeholder is known only at run time and is not
  judged; a required query parameter must be present; with `strict_routes`, a method and path
  that match no operation are refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS30WriteValidator, OAS31Validator
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4, DRAFT202012

from gqlbatch.core.errors import ConfigError, ErrorCode, Problem
from gqlbatch.core.placeholders import Ref, TemplateSyntaxError, parse_template
from gqlbatch.core.request import SubRequest

__all__ = ["Contract", "Operation"]

_DOCUMENT = "urn:gqlbatch:openapi"
_TEMPLATE_PART = re.compile(r"\{[^}/]+\}")
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation of the document, as far as checking a sub-request needs it."""

    method: str
    template: str
    pattern: re.Pattern[str]
    required_query: tuple[str, ...]
    body_pointer: str | None
    """Where the JSON request body's schema is, in the document (a JSON pointer)."""
    body_required: bool


class Contract:
    """One upstream's document: its operations, and the checks they make."""

    def __init__(self, document: Mapping[str, Any], source: str) -> None:
        self.source = source
        self._operations = tuple(_operations(document))
        version = str(document.get("openapi", ""))
        specification = DRAFT202012 if version.startswith("3.1") else DRAFT4
        resource = Resource.from_contents(document, default_specification=specification)
        self._registry: Registry[Any] = Registry().with_resource(_DOCUMENT, resource)
        self._validator = OAS31Validator if version.startswith("3.1") else OAS30WriteValidator

    @classmethod
    def from_text(cls, text: str, source: str) -> Contract:
        """Parse and check a document.

        Raises:
            ConfigError: one line naming *source* and the problem.
        """
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not JSON or YAML: {_one_line(exc)}") from None
        if not isinstance(document, dict):
            raise ConfigError(f"{source}: an OpenAPI document is an object")
        try:
            validate(document)
        except OpenAPIValidationError as exc:
            raise ConfigError(f"{source}: not a valid OpenAPI document: {_one_line(exc)}") from None
        except Exception as exc:  # an unresolvable $ref, an unknown version: the library's own
            raise ConfigError(f"{source}: cannot be read as OpenAPI: {_one_line(exc)}") from None
        return cls(document, source)

    def match(self, method: str, path: str) -> Operation | None:
        """The operation for *method* and *path* (its query string ignored), or None."""
        bare = path.split("?", 1)[0]
        for operation in self._operations:
            if operation.method == method.upper() and operation.pattern.match(bare):
                return operation
        return None

    def problems(self, item: SubRequest, *, strict_routes: bool) -> list[Problem]:
        """What is wrong with *item* according to the document; empty when nothing is."""
        operation = self.match(item.method.value, item.path)
        if operation is None:
            if not strict_routes:
                return []
            path = item.path.split("?", 1)[0]
            message = f"{item.method.value} {path} matches no operation of {self.source}"
            return [_problem(item, ErrorCode.UNKNOWN_ROUTE, message, "path")]
        found = [
            _problem(
                item,
                ErrorCode.INVALID_INPUT,
                f"{operation.method} {operation.template} requires the query parameter {name!r}",
                "query",
            )
            for name in operation.required_query
            if name not in {key for key, _ in item.query} and f"{name}=" not in item.path
        ]
        return found + self._body_problems(item, operation)

    def _body_problems(self, item: SubRequest, operation: Operation) -> list[Problem]:
        if operation.body_pointer is None:
            return []
        if not item.has_body:
            if not operation.body_required:
                return []
            message = f"{operation.method} {operation.template} requires a JSON body"
            return [_problem(item, ErrorCode.INVALID_INPUT, message, "body")]
        schema = {"$ref": f"{_DOCUMENT}#{operation.body_pointer}"}
        validator = self._validator(schema, registry=self._registry)
        return [
            _problem(
                item,
                ErrorCode.INVALID_INPUT,
                f"body{_pointer(error)} does not match {operation.method} {operation.template}'s "
                f"schema: {error.message}",
                "body" + _pointer(error),
            )
            for error in _judged(validator.iter_errors(item.body))
        ]


def _judged(errors: Iterator[ValidationError]) -> Iterator[ValidationError]:
    """The errors about values known now: a placeholder's value is known only at run time."""
    for error in errors:
        if not _is_placeholder(error.instance):
            yield error


def _is_placeholder(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return any(isinstance(part, Ref) for part in parse_template(value).parts)
    except TemplateSyntaxError:
        return False  # reported as INVALID_REFERENCE by the planner


def _operations(document: Mapping[str, Any]) -> Iterator[Operation]:
    paths = document.get("paths") or {}
    # Literal templates before templated ones: `/users/me` wins over `/users/{id}`.
    for template in sorted(paths, key=lambda t: (t.count("{"), t)):
        path_item = paths[template]
        shared = path_item.get("parameters", [])
        for method in _METHODS:
            operation = path_item.get(method)
            if operation is None:
                continue
            pointer = f"/paths/{_escape(template)}/{method}"
            yield Operation(
                method=method.upper(),
                template=template,
                pattern=_pattern(template),
                required_query=_required_query(
                    document, [*shared, *operation.get("parameters", [])]
                ),
                body_pointer=_body_pointer(document, operation, pointer),
                body_required=bool(
                    _resolved(document, operation.get("requestBody", {})).get("required")
                ),
            )


def _pattern(template: str) -> re.Pattern[str]:
    parts = _TEMPLATE_PART.split(template)
    return re.compile("^" + "[^/]+".join(re.escape(p) for p in parts) + "/?$")


def _required_query(document: Mapping[str, Any], parameters: Sequence[Any]) -> tuple[str, ...]:
    names = []
    for parameter in parameters:
        resolved = _resolved(document, parameter)
        if resolved.get("in") == "query" and resolved.get("required"):
            names.append(str(resolved["name"]))
    return tuple(names)


def _body_pointer(document: Mapping[str, Any], operation: Mapping[str, Any], at: str) -> str | None:
    body = operation.get("requestBody")
    if body is None:
        return None
    if "$ref" in body:
        at, body = body["$ref"].removeprefix("#"), _resolved(document, body)
    else:
        at += "/requestBody"
    for media, content in body.get("content", {}).items():
        is_json = media.split(";")[0].strip() == "application/json" or media.endswith("+json")
        if is_json and "schema" in content:
            return f"{at}/content/{_escape(media)}/schema"
    return None


def _resolved(document: Mapping[str, Any], node: Any) -> Any:
    """*node*, or what its local `$ref` names (the ones parameters and bodies use)."""
    seen = 0
    while isinstance(node, dict) and "$ref" in node and seen < 32:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node, seen = target, seen + 1
    return node if isinstance(node, dict) else {}


def _escape(text: str) -> str:
    return text.replace("~", "~0").replace("/", "~1")


def _pointer(error: ValidationError) -> str:
    return "".join(f"/{_escape(str(p))}" for p in error.absolute_path)


def _problem(item: SubRequest, code: ErrorCode, message: str, field: str) -> Problem:
    return Problem(code, message, request_id=item.request_id, index=item.index, field=field)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
