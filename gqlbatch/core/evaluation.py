"""A reference's value against the results it names (DESIGN §6): a body selected into, a
status, a header; and a body projected onto the paths a client selected (`body(select:)`).

Pure and synchronous. A selector that finds nothing raises ReferenceNotFound, naming the id,
the path, and the keys there were.
"""

from __future__ import annotations

from typing import Any

from gqlbatch.core.errors import BinaryInText, ReferenceNotFound
from gqlbatch.core.placeholders import Each, Index, Key, Ref, RefKind, Scope, Selector
from gqlbatch.core.types import JSON, Headers
from gqlbatch.core.wire import BodyEncoding

__all__ = ["evaluate", "project"]


def evaluate(ref: Ref, scope: Scope) -> JSON:
    """The value *ref* points at in *scope*.

    Raises:
        ReferenceNotFound: a selector matched nothing; the message names what exists.
    """
    if ref.kind is RefKind.INDEX:
        return scope.index
    if ref.kind is RefKind.ITEM:
        return _select(scope.item, ref)
    assert ref.target is not None
    result = scope.results[ref.target]
    if ref.kind is RefKind.STATUS:
        return result.status
    if ref.kind is RefKind.HEADER:
        return _header(result.headers, ref)
    if result.body_encoding is BodyEncoding.BASE64:
        raise _binary(ref, result.headers)
    return _select(result.body, ref)


def _binary(ref: Ref, headers: Headers) -> BinaryInText:
    # Its base64 text in a path, a header or a JSON string would reach the upstream as
    # characters it never sent (issue 27: 1,388 bytes of "UEsDB..." for a 1,039-byte
    # document). As a whole body, `core.call` sends its bytes.
    kind = next((v for n, v in headers if n.lower() == "content-type"), "no Content-Type")
    return BinaryInText(
        f"{ref.text} is a binary answer ({kind}): it can only be a whole body, "
        f'exactly "{{resultOf({ref.target})}}", which sends its bytes as they came'
    )


def project(value: JSON, paths: tuple[tuple[Selector, ...], ...]) -> JSON:
    """Keep only the fields at *paths* (`body(select:)`), in time linear in *value*.

    Lists are transparent: a list is projected element by element, at any depth, so
    `posts.title` keeps the title of every post, and `[*]` says the same explicitly. `[i]`
    keeps only the elements named, in their order. A path that ends at a value keeps it whole;
    a value that is not an object or a list (text, null) is returned as it is.
    """
    return _project(value, _trie(paths))


_Trie = dict[Selector, "_Trie"]
_WHOLE: _Trie = {}
"""The trie node where a path ends: the value there is kept whole."""


def _trie(paths: tuple[tuple[Selector, ...], ...]) -> _Trie:
    root: _Trie = {}
    for path in paths:
        node = root
        for selector in path[:-1]:
            child = node.get(selector)
            if child is _WHOLE:
                break  # a shorter path already keeps this value whole
            node = node.setdefault(selector, {}) if child is None else child
        else:
            node[path[-1]] = _WHOLE  # and a longer one that was there is moot
    return root


def _project(value: JSON, trie: _Trie) -> JSON:
    # Each step costs the smaller of the value's keys and the trie's, so the whole walk is
    # linear in the body however many paths there are (it was rows x paths, with an
    # exception per miss: 1,000 rows by 1,000 paths held the event loop for 5 s).
    if trie is _WHOLE:
        return value
    if isinstance(value, list):
        return _project_list(value, trie)
    if not isinstance(value, dict):
        return value
    keys = [s for s in trie if isinstance(s, Key)] if len(trie) <= len(value) else None
    out: dict[str, JSON] = {}
    if keys is not None:
        for selector in keys:
            if selector.name in value:
                out[selector.name] = _project(value[selector.name], trie[selector])
    else:
        for name, item in value.items():
            child = trie.get(Key(name))
            if child is not None:
                out[name] = _project(item, child)
    return out


def _project_list(value: list[JSON], trie: _Trie) -> JSON:
    each = trie.get(Each())
    if each is not None and len(trie) == 1:
        return [_project(v, each) for v in value]
    picks = sorted((s.position, child) for s, child in trie.items() if isinstance(s, Index))
    if picks:
        size = len(value)
        return [_project(value[p], child) for p, child in picks if -size <= p < size]
    return [_project(v, trie) for v in value]


def _header(headers: Headers, ref: Ref) -> str:
    wanted = (ref.header or "").lower()
    for name, value in headers:
        if name.lower() == wanted:
            return value
    names = ", ".join(sorted({f"'{n}'" for n, _ in headers})) or "none"
    raise ReferenceNotFound(
        f"{ref.text}: '{ref.target}' result has no header '{ref.header}' (headers: {names})"
    )


def _select(value: JSON, ref: Ref) -> JSON:
    found = _walk(value, ref.selectors)
    if found is not _MISS:
        return found
    # Walked again, naming each step, to say what does exist: the names cost only a miss
    # (built on every step, they were a third of evaluating a placeholder that matched).
    label = "item" if ref.kind is RefKind.ITEM else f"'{ref.target}' result"
    return _labelled(value, ref.selectors, label, ref.text)  # raises ReferenceNotFound


_MISS: Any = object()
"""What `_walk` gives when a selector matches nothing; never a JSON value."""


def _walk(value: JSON, selectors: tuple[Selector, ...]) -> JSON:
    # `_labelled`'s walk, step for step, without the names its messages need.
    for i, selector in enumerate(selectors):
        if isinstance(selector, Key):
            if not (isinstance(value, dict) and selector.name in value):
                return _MISS
            value = value[selector.name]
        elif isinstance(selector, Index):
            if not (isinstance(value, list) and -len(value) <= selector.position < len(value)):
                return _MISS
            value = value[selector.position]
        else:
            if not isinstance(value, list):
                return _MISS
            rest = selectors[i + 1 :]
            picked = [_walk(v, rest) for v in value]
            if any(p is _MISS for p in picked):
                return _MISS
            if any(isinstance(s, Each) for s in rest):
                return [x for sub in picked for x in sub]
            return picked
    return value


def _labelled(value: JSON, selectors: tuple[Selector, ...], label: str, text: str) -> JSON:
    for i, selector in enumerate(selectors):
        if isinstance(selector, Each):
            return _labelled_each(value, selectors[i + 1 :], f"{label}{_path(selectors[:i])}", text)
        value = _step(value, selector, f"{label}{_path(selectors[:i])}", text)
    return value


def _labelled_each(value: JSON, rest: tuple[Selector, ...], label: str, text: str) -> JSON:
    if not isinstance(value, list):
        raise ReferenceNotFound(
            f"{text}: {label} is {_kind(value)}, not a list, so [*] matches nothing"
        )
    picked = [_labelled(v, rest, f"{label}[{i}]", text) for i, v in enumerate(value)]
    if any(isinstance(s, Each) for s in rest):
        return [x for sub in picked for x in sub]
    return picked


def _step(value: JSON, selector: Selector, label: str, text: str) -> JSON:
    if isinstance(selector, Key):
        if isinstance(value, dict) and selector.name in value:
            return value[selector.name]
        if isinstance(value, dict):
            keys = ", ".join(f"'{k}'" for k in list(value)[:20]) or "none"
            raise ReferenceNotFound(f"{text}: {label} has no key '{selector.name}' (keys: {keys})")
        raise ReferenceNotFound(
            f"{text}: {label} is {_kind(value)}, so it has no key '{selector.name}'"
        )
    assert isinstance(selector, Index)
    if isinstance(value, list) and -len(value) <= selector.position < len(value):
        return value[selector.position]
    if isinstance(value, list):
        raise ReferenceNotFound(
            f"{text}: {label} has {len(value)} elements; index {selector.position} is out of range"
        )
    raise ReferenceNotFound(
        f"{text}: {label} is {_kind(value)}, so it has no index {selector.position}"
    )


def _path(selectors: tuple[Selector, ...]) -> str:
    return "".join(
        f".{s.name}" if isinstance(s, Key) else f"[{s.position}]" if isinstance(s, Index) else "[*]"
        for s in selectors
    )


def _kind(value: JSON) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number"
    )
