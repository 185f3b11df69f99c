"""An upstream's OpenAPI document (3.0 or 3.1, JSON or YAML), and what it says a sub-request
must be before it is sent (issue 14, "validation first"). Pure: the text is read elsewhere.

- A document is parsed (JSON, else YAML with PyYAML) and checked
  (openapi-spec-validator) once, at start-up; any problem is one ConfigError line.
- An item is matched to an operation by its method and its path against the document's path
  templates (`/users/{id}`); placeholders stand for path segments.
- Before anything runs: a request body is checked against its operation's JSON schema
  (openapi-schema-validator, `$ref`s resolved in the document by `referencing`), each error
  with its JSON pointer; a value that is a placeholder is known only at run time and is not
  judged; a required query parameter must be present; with `strict_routes`, a method and path
  that match no operation are refused; a placeholder must select a field that the referenced
  item's answer has (`gqlbatch.core.references`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gqlbatch.core.budget import RequestBudget
from gqlbatch.core.errors import ConfigError, ErrorCode, Problem
from gqlbatch.core.placeholders import (
    Template,
)
from gqlbatch.core.request import SubRequest
from gqlbatch.core.schema_checks import (
    ERRORS_SHOWN,
    CheckTooCostly,
    bounded_validator,
    schema_errors,
    short,
)
from gqlbatch.core.strict_json import depth
from gqlbatch.core.types import JSON
from gqlbatch.core.upstream_settings import BulkRoute

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

# PyYAML, jsonschema, referencing and the OpenAPI validators are imported where a document is
# read (`Contract`), not with this module: a server whose upstreams name no document never
# loads them: 18 MiB less in each process (53 MiB after start-up, from 71).

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_OPERATIONS",
    "Contract",
    "Operation",
    "escape_pointer",
    "item_problem",
]

MAX_BYTES = 16 * 1024 * 1024
"""The largest document read, from a file or a URL (issue 24: a URL that streamed without end
took the process to 8.1 GiB at start-up)."""
MAX_DEPTH = 64
"""The deepest a document may nest: real ones stay under 20; 100,000 levels stopped start-up
with a traceback."""
MAX_OPERATIONS = 2_000
"""The most operations a document may have: start-up checks it and types its answers in
about 10 ms an operation (10,000 took 72 s and 481 MiB)."""

_DOCUMENT = "urn:gqlbatch:openapi"
_TEMPLATE_PART = re.compile(r"\{[^}/]+\}")
_MATCHES_KEPT = 4096
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_UNMATCHED = object()


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
    response_pointer: str | None = None
    """Where its success answer's JSON schema is, in the document (a JSON pointer)."""
    answers: tuple[tuple[str, str], ...] = ()
    """Each documented status (`200`, `4XX`, `DEFAULT`) with its answer's JSON schema."""
    operation_id: str | None = None


class Contract:
    """One upstream's document: its operations, and the checks they make."""

    def __init__(self, document: Mapping[str, Any], source: str) -> None:
        self.source = source
        self._document = document
        self.operations: tuple[Operation, ...] = tuple(_operations(document))
        self.version = version = str(document.get("openapi", ""))
        from openapi_schema_validator import (
            OAS30ReadValidator,
            OAS30WriteValidator,
            OAS31Validator,
        )
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT4, DRAFT202012

        specification = DRAFT202012 if version.startswith("3.1") else DRAFT4
        resource = Resource.from_contents(document, default_specification=specification)
        self._registry: Registry[Any] = Registry().with_resource(_DOCUMENT, resource)
        # Their patterns run with a time bound (schema_checks), not on `re`.
        self._validator = bounded_validator(
            OAS31Validator if version.startswith("3.1") else OAS30WriteValidator
        )
        self._answer_validator = bounded_validator(
            OAS31Validator if version.startswith("3.1") else OAS30ReadValidator
        )
        # Built once per schema, on first use: making a validator, and resolving its $refs
        # through the registry, cost more than the check itself (benchmarks/openapi.py).
        self._validators: dict[tuple[str, bool], Any] = {}
        self._matched: dict[tuple[str, str], Operation | None] = {}
        self.bulk_routes: tuple[BulkRoute, ...] = tuple(_bulk_routes(document))
        """The bulk routes the document shows (`infer_bulk`): a list operation that filters
        by an array of ids, beside the single lookups it can serve."""

    @classmethod
    def from_text(cls, text: str, source: str) -> Contract:
        """Parse and check a document.

        Raises:
            ConfigError: one line naming *source* and the problem.
        """
        import yaml
        from openapi_spec_validator import validate
        from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

        try:  # JSON first: PyYAML's pure-Python loader took 0.8 s on a 100 KiB JSON document
            document = json.loads(text)
        except RecursionError:
            raise ConfigError(f"{source}: nested more than {MAX_DEPTH} levels deep") from None
        except ValueError:
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, if PyYAML has it
            try:
                document = yaml.load(text, Loader=loader)
            except yaml.YAMLError as exc:
                raise ConfigError(f"{source}: not JSON or YAML: {_one_line(exc)}") from None
        if not isinstance(document, dict):
            raise ConfigError(f"{source}: an OpenAPI document is an object")
        _check_size(document, source)
        try:
            validate(document)
        except OpenAPIValidationError as exc:
            raise ConfigError(f"{source}: not a valid OpenAPI document: {_one_line(exc)}") from None
        except Exception as exc:  # an unresolvable $ref, an unknown version: the library's own
            raise ConfigError(f"{source}: cannot be read as OpenAPI: {_one_line(exc)}") from None
        return cls(document, source)

    def match(self, method: str, path: str) -> Operation | None:
        """The operation for *method* and *path* (its query string ignored), or None."""
        key = (method.upper(), path.split("?", 1)[0])
        # One lookup, not `in` then `[]`: a check in a thread may find the table cleared
        # between the two.
        found = self._matched.get(key, _UNMATCHED)
        if found is not _UNMATCHED:
            return found  # type: ignore[return-value]
        found = next(
            (o for o in self.operations if o.method == key[0] and o.pattern.match(key[1])), None
        )
        if len(self._matched) >= _MATCHES_KEPT:  # paths with literal ids do not repeat
            self._matched.clear()
        self._matched[key] = found
        return found

    def node(self, pointer: str) -> Any:
        """What the JSON pointer *pointer* (`/components/schemas/User`) points at, or None."""
        return _pointed(self._document, "#" + pointer)

    def _validator_for(self, pointer: str, *, answer: bool) -> Any:
        validator = self._validators.get((pointer, answer))
        if validator is None:
            kind = self._answer_validator if answer else self._validator
            validator = kind({"$ref": f"{_DOCUMENT}#{pointer}"}, registry=self._registry)
            self._validators[(pointer, answer)] = validator
        return validator

    def problems(
        self, item: SubRequest, *, strict_routes: bool, budget: RequestBudget, body: JSON = None
    ) -> list[Problem]:
        """What is wrong with *item* according to the document; empty when nothing is. Its
        body's check is charged to *budget*. *body* is the item's body as the planner compiled
        it (`plan.PlannedItem.body`): a value that is a placeholder there is known only at run
        time, and its type is not judged now."""
        operation = self.match(item.method.value, item.path)
        if operation is None:
            if not strict_routes:
                return []
            path = item.path.split("?", 1)[0]
            message = f"{item.method.value} {path} matches no operation of {self.source}"
            return [item_problem(item, ErrorCode.UNKNOWN_ROUTE, message, "path")]
        found = [
            item_problem(
                item,
                ErrorCode.INVALID_INPUT,
                f"{operation.method} {operation.template} requires the query parameter {name!r}",
                "query",
            )
            for name in operation.required_query
            if name not in {key for key, _ in item.query} and f"{name}=" not in item.path
        ]
        return found + self._body_problems(item, operation, budget, body)

    def _body_problems(
        self, item: SubRequest, operation: Operation, budget: RequestBudget, compiled: JSON
    ) -> list[Problem]:
        if operation.body_pointer is None:
            return []
        if not item.has_body:
            if not operation.body_required:
                return []
            message = f"{operation.method} {operation.template} requires a JSON body"
            return [item_problem(item, ErrorCode.INVALID_INPUT, message, "body")]
        validator = self._validator_for(operation.body_pointer, answer=False)
        route = f"{operation.method} {operation.template}"
        try:
            errors = schema_errors(validator, item.body, budget, _known_now(compiled))
        except CheckTooCostly as exc:
            message = f"body cannot be checked against {route}'s schema: {exc}"
            return [item_problem(item, ErrorCode.REQUEST_TOO_LARGE, message, "body")]
        problems = [
            item_problem(
                item,
                ErrorCode.INVALID_INPUT,
                f"body{_pointer(error)} does not match {route}'s schema: {short(error.message)}",
                "body" + _pointer(error),
            )
            for error in errors[:ERRORS_SHOWN]
        ]
        if len(errors) > ERRORS_SHOWN:
            message = (
                f"body has more problems with {route}'s schema; the first {ERRORS_SHOWN} are listed"
            )
            problems.append(item_problem(item, ErrorCode.INVALID_INPUT, message, "body"))
        return problems

    def answer_problems(
        self, method: str, path: str, status: int, body: object, budget: RequestBudget
    ) -> list[str]:
        """How an upstream's JSON answer breaks its documented schema, one line per error
        with its JSON pointer (the first few); empty when it keeps to it, or nothing documents
        it. The check is charged to *budget*; one it cannot pay for is one line saying so."""
        operation = self.match(method, path)
        if operation is None:
            return []
        schemas = dict(operation.answers)
        pointer = (
            schemas.get(str(status)) or schemas.get(f"{str(status)[0]}XX") or schemas.get("DEFAULT")
        )
        if pointer is None:
            return []
        validator = self._validator_for(pointer, answer=True)
        try:
            errors = schema_errors(validator, body, budget)
        except CheckTooCostly as exc:
            return [f"the answer cannot be checked: {exc}"]
        return [f"body{_pointer(error)}: {short(error.message)}" for error in errors]


def _known_now(compiled: JSON) -> Callable[[ValidationError], bool]:
    """Whether an error is about a value known now: one the planner compiled into a
    placeholder (in *compiled*, the planned body) is known only at run time."""

    def known(error: ValidationError) -> bool:
        node: Any = compiled
        for step in error.absolute_path:  # the path jsonschema walked into the same body
            if not _has_step(node, step):
                return True
            node = node[step]
        return not (isinstance(node, Template) and node.refs)

    return known


def _has_step(node: object, step: str | int) -> bool:
    if isinstance(node, dict):
        return step in node
    return isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)


def _check_size(document: Mapping[str, Any], source: str) -> None:
    """Raises:
    ConfigError: *document* nests deeper than MAX_DEPTH, or has more than MAX_OPERATIONS."""
    if depth(document) > MAX_DEPTH:
        raise ConfigError(f"{source}: nested more than {MAX_DEPTH} levels deep")
    paths = document.get("paths")
    count = sum(
        1
        for item in (paths.values() if isinstance(paths, dict) else ())
        if isinstance(item, dict)
        for method in _METHODS
        if method in item
    )
    if count > MAX_OPERATIONS:
        raise ConfigError(
            f"{source}: {count} operations, more than the {MAX_OPERATIONS} a document may "
            "have; give the gateway a document of the operations it fronts"
        )


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
            pointer = f"/paths/{escape_pointer(template)}/{method}"
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
                response_pointer=_response_pointer(document, operation, pointer),
                answers=tuple(_answer_pointers(document, operation, pointer)),
                operation_id=str(operation["operationId"]) if "operationId" in operation else None,
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


def _bulk_routes(document: Mapping[str, Any]) -> Iterator[BulkRoute]:
    """For each `GET /things` whose query takes an array of a field its rows have, repeated
    (`form`, exploded: `?id=1&id=2`): the lookup `GET /things/{id}` when the field is the one
    `/things/{x}` names, else the one-to-many `GET /things?field={id}`."""
    paths = document.get("paths") or {}
    for template, path_item in sorted(paths.items()):
        operation = (path_item or {}).get("get")
        if "{" in template or not isinstance(operation, dict):
            continue
        row = _row_properties(document, operation, f"/paths/{escape_pointer(template)}/get")
        parameters = [*path_item.get("parameters", []), *operation.get("parameters", [])]
        for parameter in (_resolved(document, p) for p in parameters):
            name = parameter.get("name")
            if not _is_repeated_array(document, parameter) or name not in row:
                continue
            single = f"{template.rstrip('/')}/{{{name}}}"
            if name == "id" and any(_TEMPLATE_PART.sub("{id}", t) == single for t in paths):
                yield BulkRoute(match=f"{template.rstrip('/')}/{{id}}")
            elif name != "id":
                yield BulkRoute(match=f"{template}?{name}={{id}}", many=True)


def _is_repeated_array(document: Mapping[str, Any], parameter: Mapping[str, Any]) -> bool:
    schema = _resolved(document, parameter.get("schema") or {})
    return (
        parameter.get("in") == "query"
        and schema.get("type") == "array"
        and parameter.get("style", "form") == "form"
        and parameter.get("explode", True) is True
    )


def _row_properties(document: Mapping[str, Any], operation: Mapping[str, Any], at: str) -> set[str]:
    """The fields of the rows a list operation answers with (its 200 is an array of them)."""
    pointer = dict(_answer_pointers(document, operation, at)).get("200")
    if pointer is None:
        return set()
    schema = _resolved(document, _pointed(document, "#" + pointer))
    if schema.get("type") != "array":
        return set()
    rows = _resolved(document, schema.get("items") or {})
    fields = set(rows.get("properties") or {})
    for part in rows.get("allOf") or ():
        fields.update(_resolved(document, part).get("properties") or {})
    return fields


def _body_pointer(document: Mapping[str, Any], operation: Mapping[str, Any], at: str) -> str | None:
    """Where the operation's JSON request body schema is, in the document."""
    body = operation.get("requestBody")
    return None if body is None else _json_schema(document, body, f"{at}/requestBody")


def _answer_pointers(
    document: Mapping[str, Any], operation: Mapping[str, Any], at: str
) -> Iterator[tuple[str, str]]:
    """Each documented status (`200`, `4XX`, `DEFAULT`) with its JSON answer's schema."""
    for status, response in (operation.get("responses") or {}).items():
        where = f"{at}/responses/{escape_pointer(str(status))}"
        pointer = _json_schema(document, response, where)
        if pointer is not None:
            yield str(status).upper(), pointer


def _response_pointer(
    document: Mapping[str, Any], operation: Mapping[str, Any], at: str
) -> str | None:
    """The schema of the operation's first success answer that has one."""
    answers = sorted(_answer_pointers(document, operation, at))
    return next((pointer for status, pointer in answers if status.startswith("2")), None)


def _json_schema(document: Mapping[str, Any], holder: Mapping[str, Any], at: str) -> str | None:
    """Where the JSON schema of a request body or an answer (*holder*, at *at*, perhaps a
    `$ref`) is: its first `application/json` or `+json` content with a schema."""
    if "$ref" in holder:
        at, holder = holder["$ref"].removeprefix("#"), _resolved(document, holder)
    for media, content in (holder.get("content") or {}).items():
        is_json = media.split(";")[0].strip() == "application/json" or media.endswith("+json")
        if is_json and "schema" in content:
            return f"{at}/content/{escape_pointer(media)}/schema"
    return None


def _resolved(document: Mapping[str, Any], node: Any) -> Any:
    """*node*, or what its local `$ref`s lead to (the ones parameters and bodies use)."""
    seen = 0
    while isinstance(node, dict) and "$ref" in node and seen < 32:
        node, seen = _pointed(document, str(node["$ref"])), seen + 1
    return node if isinstance(node, dict) else {}


def _pointed(document: Mapping[str, Any], ref: str) -> Any:
    """What a local `$ref` (`#/components/schemas/User`) points at, or None."""
    target: Any = document
    for part in ref.removeprefix("#/").split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        if isinstance(target, dict) and key in target:
            target = target[key]
        elif isinstance(target, list) and key.isdigit() and int(key) < len(target):
            target = target[int(key)]
        else:
            return None
    return target


def escape_pointer(text: str) -> str:
    """*text* as one step of a JSON pointer (RFC 6901)."""
    return text.replace("~", "~0").replace("/", "~1")


def _pointer(error: ValidationError) -> str:
    return "".join(f"/{escape_pointer(str(p))}" for p in error.absolute_path)


def item_problem(item: SubRequest, code: ErrorCode, message: str, field: str) -> Problem:
    """A problem of *item*, at its *field*."""
    return Problem(code, message, request_id=item.request_id, index=item.index, field=field)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
