"""JSON from outside, read strictly: what a client sends and what an upstream answers.

Pure and stdlib-only. Python's `json` accepts `NaN` and `Infinity`, turns `1e400` into an
infinite float, raises a bare ValueError past 4,300 digits, and recurses once per level of
nesting, so a document a thousand levels deep costs a RecursionError wherever it is walked
next. `loads` refuses all of these with one exception type and a sentence that says why.
"""

from __future__ import annotations

import json
import math

from gqlbatch.core.types import JSON

__all__ = ["DEFAULT_MAX_DEPTH", "JSONRefused", "depth", "loads"]

DEFAULT_MAX_DEPTH = 128
"""Deep enough for any real document; shallow enough that every recursive walk of it (ours,
graphql-core's, the encoder's) stays far below Python's recursion limit."""


class JSONRefused(ValueError):
    """The text is not JSON, or is JSON gqlbatch will not carry; the message says which."""


def loads(data: str | bytes | bytearray, *, max_depth: int = DEFAULT_MAX_DEPTH) -> JSON:
    """Parse *data* as RFC 8259 JSON no deeper than *max_depth*.

    Raises:
        JSONRefused: not JSON; `NaN`/`Infinity`; a number out of float range; an integer of
            more than 4,300 digits; nesting deeper than *max_depth*.
    """
    try:
        text = data if isinstance(data, str) else _text(data)
        value = _DECODER.decode(text)
    except RecursionError:
        raise JSONRefused(f"nested more than {max_depth} levels deep") from None
    except JSONRefused:
        raise
    except json.JSONDecodeError as exc:
        raise JSONRefused(f"not JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise JSONRefused(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except ValueError as exc:  # int() past sys.get_int_max_str_digits()
        raise JSONRefused(f"a number is too long: {exc}") from None
    if _may_nest_deeper(data, max_depth) and depth(value) > max_depth:
        raise JSONRefused(f"nested more than {max_depth} levels deep")
    return value


def _text(data: bytes | bytearray) -> str:
    # What json.loads does with bytes: UTF-8, -16 or -32, told apart by where the zero bytes
    # are (RFC 8259 §8.1 asks for UTF-8; the others are read as json.loads reads them).
    return data.decode(json.detect_encoding(data), "surrogatepass")


def _refuse_constant(name: str) -> float:
    raise JSONRefused(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONRefused(f"the number {text[:40]} is out of range")
    return value


# One decoder for every call: json.loads with hooks builds a new decoder and scanner each time.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def _may_nest_deeper(data: str | bytes | bytearray, max_depth: int) -> bool:
    # Nesting needs an opening bracket per level: a document with few brackets (most of them)
    # skips the walk. Counting is a C loop over the text, far cheaper than parsing it.
    if isinstance(data, str):
        return data.count("[") + data.count("{") > max_depth
    return data.count(b"[") + data.count(b"{") > max_depth


def depth(value: JSON) -> int:
    """The nesting depth of a parsed value, without recursion: a scalar is 0.

    A level at a time, each level's containers gathered by comprehensions: an upstream's
    answer of 1 MiB (9,000 rows) took 60 ms to walk a value at a time, more than parsing it,
    and takes 12 ms so (issue 24).
    """
    level = [value] if isinstance(value, dict | list) else []
    deepest = 0
    while level:
        deepest += 1
        dicts = [node for node in level if isinstance(node, dict)]
        lists = [node for node in level if not isinstance(node, dict)]
        below: list[JSON] = [c for n in dicts for c in n.values() if isinstance(c, dict | list)]
        below += [c for n in lists for c in n if isinstance(c, dict | list)]
        level = below
    return deepest
