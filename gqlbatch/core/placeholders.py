"""The placeholder language of DESIGN §6: parse templates and find their references (their
values: `evaluation`).

Pure and synchronous. A template is parsed once, when the batch is planned, and rendered once
per call. Imports only `errors` and `types`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from gqlbatch.core.types import JSON, REQUEST_ID_CHARS, Headers, RequestId, frozen_for_type_checkers
from gqlbatch.core.wire import HEADER_NAME, BodyEncoding

__all__ = [
    "Each",
    "Index",
    "Key",
    "Ref",
    "RefKind",
    "Referable",
    "Scope",
    "Selector",
    "Template",
    "TemplateSyntaxError",
    "brace_bare_references",
    "compile_json",
    "json_references",
    "may_hold_placeholders",
    "parse_selectors",
    "parse_template",
]


class RefKind(StrEnum):
    """What a placeholder reads."""

    RESULT = "resultOf"
    STATUS = "statusOf"
    HEADER = "headerOf"
    ITEM = "item"
    INDEX = "index"


@dataclass(frozen=True, slots=True)
class Key:
    """`.name` or `["name"]`: a key of an object."""

    name: str


@dataclass(frozen=True, slots=True)
class Index:
    """`[2]` or `[-1]`: an element of a list."""

    position: int


@dataclass(frozen=True, slots=True)
class Each:
    """`[*]`: every element of a list; the rest of the path applies to each."""


Selector = Key | Index | Each


@dataclass(frozen=True, slots=True)
class Ref:
    """One parsed placeholder, such as `{resultOf(user).posts[0].id}`."""

    kind: RefKind
    target: RequestId | None = None
    selectors: tuple[Selector, ...] = ()
    header: str | None = None
    text: str = ""


@dataclass(frozen=True, slots=True)
class Template:
    """A string split into literal text and placeholders."""

    parts: tuple[str | Ref, ...]
    refs: tuple[Ref, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "refs", tuple(p for p in self.parts if isinstance(p, Ref)))

    @property
    def whole(self) -> Ref | None:
        """The placeholder when the string is exactly one placeholder, which keeps its type."""
        return self.parts[0] if len(self.parts) == 1 and isinstance(self.parts[0], Ref) else None


class TemplateSyntaxError(ValueError):
    """A placeholder opens but does not parse; the batch is rejected with INVALID_REFERENCE."""


class Referable(Protocol):
    """What a placeholder can read of an earlier item's result."""

    @property
    def status(self) -> int | None: ...
    @property
    def headers(self) -> Headers: ...
    @property
    def body(self) -> JSON: ...
    @property
    def body_encoding(self) -> BodyEncoding: ...


_MISSING = object()


@frozen_for_type_checkers()
class Scope:
    """The values placeholders resolve against: earlier results, and a forEach element."""

    results: Mapping[RequestId, Referable]
    item: JSON = _MISSING
    index: int | None = None


# ---------------------------------------------------------------------------------------------
# Parsing

_OPENER = re.compile(r"\{(?=resultOf\(|statusOf\(|headerOf\(|(?:item|index)(?![A-Za-z0-9_$]))")
_ESCAPED_OPENER = re.compile(
    r"\{\{(?=resultOf\(|statusOf\(|headerOf\(|(?:item|index)(?![A-Za-z0-9_$]))"
)
_BARE = re.compile(r"^resultOf\(")
_ID = re.compile(REQUEST_ID_CHARS + "+")
_NAME = re.compile(r"[A-Za-z_$][A-Za-z0-9_$-]*")
_INT = re.compile(r"-?\d+")
_WORDS = tuple(k.value for k in RefKind)


_KEPT = 4096
"""Parsed templates kept (LRU). A screen sends the same paths and query values again and
again, and parsing them was a fifth of planning (benchmarks/run.py --only screencpu)."""
_KEPT_LENGTH = 512
"""Only texts this short are kept, so that a request's long body strings do not outlive
it: paths, query values and header values are short."""


def parse_template(text: str) -> Template:
    """*text* split into literal parts and placeholders, as `_parse_template` does; a short
    text's template is kept and shared (a Template is immutable).

    Raises:
        TemplateSyntaxError: a placeholder opens but does not parse.
    """
    if len(text) <= _KEPT_LENGTH:
        return _kept_template(text)
    return _parse_template(text)


@functools.lru_cache(maxsize=_KEPT)
def _kept_template(text: str) -> Template:
    return _parse_template(text)  # an error is raised again each time: lru_cache keeps none


def _parse_template(text: str) -> Template:
    """Split *text* into literal parts and placeholders.

    Only `{` directly followed by `resultOf(`, `statusOf(`, `headerOf(`, or the word `item` or
    `index` opens a placeholder; every other brace is literal. `{{` before one of those words is
    a literal `{`, and the `}` or `}}` that closes the escaped text is a literal `}`. A string
    that is exactly `resultOf(ID)` plus selectors, without braces, is one whole placeholder.

    Raises:
        TemplateSyntaxError: a placeholder opens but does not parse.
    """
    bare = _parse_bare(text)
    if bare:
        return Template((bare,))
    if "{" not in text:
        return Template((text,))
    parts: list[str | Ref] = []
    literal: list[str] = []
    pos = 0
    while pos < len(text):
        escaped = _ESCAPED_OPENER.match(text, pos)
        if escaped:
            pos = _copy_escaped(text, pos + 2, literal)
            continue
        if _OPENER.match(text, pos):
            ref, end = _parse_ref(text, pos + 1)
            if end >= len(text) or text[end] != "}":
                raise TemplateSyntaxError(
                    f"placeholder at position {pos} of {text!r} is not closed: expected '}}' or a "
                    f"selector after {text[pos:end]!r}"
                )
            _flush(literal, parts)
            parts.append(Ref(ref.kind, ref.target, ref.selectors, ref.header, text[pos : end + 1]))
            pos = end + 1
            continue
        nxt = text.find("{", pos + 1)
        nxt = len(text) if nxt < 0 else nxt
        literal.append(text[pos:nxt])
        pos = nxt
    _flush(literal, parts)
    return Template(tuple(parts))


def parse_selectors(text: str) -> tuple[Selector, ...]:
    """Parse a selector path on its own, such as `author.name` or `.tags[0]`."""
    source = text if text.startswith((".", "[")) else "." + text
    selectors, end = _parse_selectors(source, 0)
    if end != len(source) or not selectors:
        raise TemplateSyntaxError(f"{text!r} is not a selector path such as 'author.name'")
    return selectors


def _parse_bare(text: str) -> Ref | None:
    # Aspose style: the whole string is `resultOf(ID)` plus selectors. Anything else that merely
    # starts with "resultOf(" is literal text, because no brace opened a placeholder.
    if not _BARE.match(text):
        return None
    try:
        ref, end = _parse_ref(text, 0)
    except TemplateSyntaxError:
        return None
    return Ref(ref.kind, ref.target, ref.selectors, text=text) if end == len(text) else None


_BARE_IN_TEXT = re.compile(r"(?<![{A-Za-z0-9_$])resultOf\(")


def brace_bare_references(text: str) -> str:
    """*text* with each bare `resultOf(ID)` plus selectors inside it written as a placeholder:
    `posts/resultOf(create).id` becomes `posts/{resultOf(create).id}`.

    The Aspose SDK writes references without braces in a request's path; this reads them as
    the grammar's placeholders. A `resultOf(` that does not parse is left as it is.
    """
    out: list[str] = []
    pos = 0
    for found in _BARE_IN_TEXT.finditer(text):
        if found.start() < pos:
            continue
        try:
            _, end = _parse_ref(text, found.start())
        except TemplateSyntaxError:
            continue
        out.append(text[pos : found.start()] + "{" + text[found.start() : end] + "}")
        pos = end
    return "".join(out) + text[pos:]


def _copy_escaped(text: str, pos: int, literal: list[str]) -> int:
    close = text.find("}", pos)
    if close < 0:
        literal.append("{" + text[pos:])
        return len(text)
    literal.append("{" + text[pos : close + 1])
    return close + 2 if text.startswith("}}", close) else close + 1


def _flush(literal: list[str], parts: list[str | Ref]) -> None:
    if literal:
        parts.append("".join(literal))
        literal.clear()


def _parse_ref(text: str, pos: int) -> tuple[Ref, int]:
    word = next(w for w in _WORDS if text.startswith(w, pos))
    kind = RefKind(word)
    pos += len(word)
    if kind is RefKind.INDEX:
        return Ref(kind), pos
    if kind is RefKind.ITEM:
        selectors, pos = _parse_selectors(text, pos)
        return Ref(kind, selectors=selectors), pos
    target, header, pos = _parse_call(text, pos, kind)
    if kind is RefKind.RESULT:
        selectors, pos = _parse_selectors(text, pos)
        return Ref(kind, target, selectors), pos
    return Ref(kind, target, header=header), pos


def _parse_call(text: str, pos: int, kind: RefKind) -> tuple[RequestId, str | None, int]:
    # pos is just after the word; the opener regex guaranteed a "(" here.
    pos += 1
    ident = _ID.match(text, pos)
    if not ident:
        raise TemplateSyntaxError(f"{kind}( at position {pos} of {text!r} needs a requestId")
    pos = ident.end()
    header = None
    if kind is RefKind.HEADER:
        header, pos = _parse_header_arg(text, pos)
    if not text.startswith(")", pos):
        raise TemplateSyntaxError(f"{kind}({ident.group()} in {text!r} is missing its ')'")
    return ident.group(), header, pos + 1


def _parse_header_arg(text: str, pos: int) -> tuple[str, int]:
    comma = re.compile(r"\s*,\s*").match(text, pos)
    name = HEADER_NAME.match(text, comma.end()) if comma else None
    if not comma or not name:
        raise TemplateSyntaxError(
            f"headerOf in {text!r} takes a requestId and a header name: headerOf(id, Location)"
        )
    return name.group(), name.end()


def _parse_selectors(text: str, pos: int) -> tuple[tuple[Selector, ...], int]:
    selectors: list[Selector] = []
    while pos < len(text) and text[pos] in ".[":
        selector, pos = _parse_selector(text, pos)
        selectors.append(selector)
    return tuple(selectors), pos


def _parse_selector(text: str, pos: int) -> tuple[Selector, int]:
    if text[pos] == ".":
        name = _NAME.match(text, pos + 1)
        if not name:
            raise TemplateSyntaxError(f"'.' at position {pos} of {text!r} needs a key name")
        return Key(name.group()), name.end()
    inner = pos + 1
    if text.startswith("*]", inner):
        return Each(), inner + 2
    number = _INT.match(text, inner)
    if number and text.startswith("]", number.end()):
        return Index(int(number.group())), number.end() + 1
    if text.startswith('"', inner):
        try:
            key, end = json.JSONDecoder().raw_decode(text, inner)
        except json.JSONDecodeError:
            key, end = None, inner
        if isinstance(key, str) and text.startswith("]", end):
            return Key(key), end + 1
    raise TemplateSyntaxError(
        f"'[' at position {pos} of {text!r} must be [integer], [\"key\"] or [*]"
    )


# ---------------------------------------------------------------------------------------------
# Compiling JSON bodies: every string that holds a placeholder becomes a Template.


def compile_json(value: JSON, where: str, errors: list[tuple[str, str]]) -> JSON:
    """Return *value* with each string that holds a placeholder replaced by its Template.

    Strings without placeholders stay plain strings, and a list or object without any is
    returned as it is, not copied: most bodies hold none. Each syntax error is appended to
    *errors* as (field, message) and the string is kept as it was, so that every problem is
    reported. A string that holds no `{` and does not begin `resultOf(` is not parsed: no
    placeholder can open in it (issue 24: a body of a million strings took seconds to plan,
    most of them spent naming each string's place for an error it could not have).
    """
    if isinstance(value, (list, dict)) and not may_hold_placeholders(value):
        return value
    return _compiled(value, (where,), errors)


_OPENER_WORDS = ("resultOf(", "statusOf(", "headerOf(", "item", "index")


def may_hold_placeholders(value: JSON) -> bool:
    """Whether any string of *value* could hold a placeholder: one of the words a placeholder
    opens with appears somewhere in it. Written out as JSON and searched, at the speed of C:
    a body of a million strings holding none needs no walk at all (a `{{` escape matters
    only before those words too)."""
    try:
        text = value if isinstance(value, str) else json.dumps(value)
    except (TypeError, ValueError):  # not plain JSON: every string is looked at
        return True
    return any(word in text for word in _OPENER_WORDS)


def _compiled(value: JSON, at: tuple[str | int, ...], errors: list[tuple[str, str]]) -> JSON:
    # *at* is the value's place as parts, written out (`body.a[3]`) only for an error.
    if isinstance(value, str):
        if "{" not in value and not value.startswith("resultOf("):
            return value
        try:
            template = parse_template(value)
        except TemplateSyntaxError as exc:
            errors.append((_written(at), str(exc)))
            return value
        if template.refs:
            return template
        # No placeholder, but an escape (`{{resultOf(x)}`): the literal it stands for. Sent
        # as written, the body carried the doubled brace the docs promise to take away.
        literal = "".join(part for part in template.parts if isinstance(part, str))
        return value if literal == value else literal
    if isinstance(value, list):
        changed: dict[int, JSON] = {}
        for i, inner in enumerate(value):
            # The usual element is a number or a plain string: looked at here, in a few
            # steps, without a call.
            if type(inner) is str:
                if "{" not in inner and not inner.startswith("resultOf("):
                    continue
            elif not isinstance(inner, (str, list, dict)):
                continue
            compiled = _compiled(inner, (*at, i), errors)
            if compiled is not inner:
                changed[i] = compiled
        if not changed:
            return value
        return [changed.get(i, inner) for i, inner in enumerate(value)]
    if isinstance(value, dict):
        found: dict[str, JSON] = {}
        for key, inner in value.items():
            if isinstance(inner, (str, list, dict)):
                compiled = _compiled(inner, (*at, key), errors)
                if compiled is not inner:
                    found[key] = compiled
        return {**value, **found} if found else value
    return value


def _written(at: tuple[str | int, ...]) -> str:
    first, *rest = at
    return str(first) + "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in rest
    )


def json_references(value: JSON) -> Iterator[Ref]:
    """Every placeholder in a compiled JSON value, in order."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, Template):
            yield from node.refs
        elif isinstance(node, list):
            stack.extend(v for v in reversed(node) if isinstance(v, (Template, list, dict)))
        elif isinstance(node, dict):
            stack.extend(
                v for v in reversed(node.values()) if isinstance(v, (Template, list, dict))
            )
