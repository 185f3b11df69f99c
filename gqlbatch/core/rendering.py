"""Rendering templates: each placeholder replaced by what it evaluates to, as text or as JSON
with its type (DESIGN §6), metered as it writes.

Pure and synchronous. A `Meter` bounds what one rendering may write: every substituted value
is charged as it is written, and the rendering stops at the first one past the limit, not
once the whole call is built (issue 24: a 1.4 KB item that embedded a 0.5 MB result a hundred
times was 50 MB of work before its size was ever looked at). A value written several times in
one rendering (the same result, embedded again) is encoded once.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from gqlbatch.core.evaluation import evaluate
from gqlbatch.core.placeholders import Scope, Template
from gqlbatch.core.types import JSON

__all__ = ["Meter", "render_json", "render_text", "to_text"]


class Meter:
    """What a rendering may still write, in characters; past it, the rendering raises what
    *over* makes."""

    __slots__ = ("_over", "_sizes", "_texts", "left")

    def __init__(
        self,
        left: int,
        over: Callable[[], Exception],
        texts: dict[int, tuple[JSON, str]] | None = None,
        sizes: dict[int, tuple[JSON, int]] | None = None,
    ) -> None:
        """*texts* and *sizes* are what earlier renderings learnt of their values, by id, to
        be shared by renderings of values that live as long (a batch's results); this one
        adds to them. The value is kept beside each: a list a selector built for one
        placeholder must not be freed, and its id given to another's, while they last."""
        self.left = left
        self._over = over
        self._texts = texts
        self._sizes = sizes

    def charge(self, size: int) -> None:
        """Write *size* characters, or stop the rendering here."""
        self.left -= size
        if self.left < 0:
            raise self._over()

    def text(self, value: JSON) -> str:
        """`to_text(value)`, worked out once per list or object of this rendering."""
        if not isinstance(value, (list, dict)):
            return to_text(value)
        if self._texts is None:
            self._texts = {}
        kept = self._texts.get(id(value))
        if kept is None:
            kept = self._texts[id(value)] = (value, to_text(value))
        return kept[1]

    def size(self, value: JSON) -> int:
        """About the characters *value* takes as JSON (never more than it does), worked out
        once per list or object of this rendering."""
        if isinstance(value, str):
            return len(value) + 2
        if not isinstance(value, (list, dict)):
            return len(to_text(value)) or 4  # null
        if self._sizes is None:
            self._sizes = {}
        kept = self._sizes.get(id(value))
        if kept is None:
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
            kept = self._sizes[id(value)] = (value, len(text))
        return kept[1]


def render_json(value: JSON, scope: Scope, meter: Meter | None = None) -> JSON:
    """Substitute a compiled JSON value: whole placeholders keep their type, others become text.
    Each substituted value is charged to *meter*, when there is one."""
    if isinstance(value, Template):
        whole = value.whole
        if whole is None:
            return render_text(value, scope, meter=meter)
        found = evaluate(whole, scope)
        if meter is not None:
            meter.charge(meter.size(found))
        return found
    if isinstance(value, list):
        return [render_json(v, scope, meter) for v in value]
    if isinstance(value, dict):
        return {k: render_json(v, scope, meter) for k, v in value.items()}
    return value


def render_text(
    template: Template,
    scope: Scope,
    encode: Callable[[str], str] = str,
    meter: Meter | None = None,
) -> str:
    """Substitute *template* as text; each substituted value passes through *encode*, and is
    charged to *meter*, when there is one."""
    out: list[str] = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
        elif meter is None:
            out.append(encode(to_text(evaluate(part, scope))))
        else:
            text = encode(meter.text(evaluate(part, scope)))
            meter.charge(len(text))
            out.append(text)
    return "".join(out)


def to_text(value: JSON) -> str:
    """A JSON value as text: lists are joined with ',', objects become compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ",".join(to_text(v) for v in value)
    if value is None:
        return ""
    if type(value) is int or type(value) is float:  # ids, mostly; not bool, which is an int
        return repr(value)  # what json.dumps writes for them, without its encoder's set-up
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
