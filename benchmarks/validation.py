"""How long the GraphQL door spends on a document before running it, at the document limits.

    python benchmarks/validation.py              # about 20 s
    python benchmarks/validation.py --random 100

Parses and validates (through the schema, with gqlbatch's limits, caches bypassed) adversarial
documents built to sit just under max_query_tokens, then random documents of fragments,
inline fragments, aliases and conflicting arguments under the same limit, and prints the time
each took, the worst first. Issue 9 asks that any document within the limits take well under
100 ms. Bounded: each document is run once, the random ones at most --random times.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))
from graphql.language import Lexer, Source, TokenKind

from gqlbatch import Settings, build_schema
from gqlbatch.doors.graphql.context import Context

TOKENS = 4_990  # just under the default max_query_tokens (5,000)


def tokens(query: str) -> int:
    """The tokens of *query*, counted up to one past TOKENS."""
    lexer, count = Lexer(Source(query)), 0
    while count <= TOKENS and lexer.advance().kind != TokenKind.EOF:
        count += 1
    return count


def largest(make: Callable[[int], str]) -> str:
    """make(n) with the largest n whose document stays within TOKENS."""
    low, high = 1, 2_500
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if tokens(make(middle)) <= TOKENS else (low, middle - 1)
    return make(low)


ADVERSARIAL: dict[str, Callable[[int], str]] = {
    "a field repeated under many parents": lambda n: (
        "query { batch(requests: []) { "
        + " ".join(f"a{i}: items {{ " + "requestId " * 16 + "}" for i in range(n))
        + " } }"
    ),
    "conflicting arguments under many parents": lambda n: (
        "query { batch(requests: []) { "
        + " ".join(
            f"a{i}: items {{ " + " ".join(f'body(select: ["x{j}"])' for j in range(16)) + " }"
            for i in range(n)
        )
        + " } }"
    ),
    "fragments spreading 32 others": lambda n: (
        "query { batch(requests: []) { items { "
        + " ".join(f"...F{i}" for i in range(min(n, 32)))
        + " } } } "
        + " ".join(
            f"fragment F{i} on ItemResult {{ "
            + " ".join(f"...F{i + k + 1}" for k in range(32) if i + k + 1 < n)
            + " requestId }"
            for i in range(n)
        )
    ),
    "32 conflicting fragments": lambda n: (
        "query { batch(requests: []) { items { "
        + " ".join(f"...F{i}" for i in range(32))
        + " } } } "
        + " ".join(
            f'fragment F{i} on ItemResult {{ body(select: ["x{i}"]) status requestId }}'
            for i in range(n)
        )
    ),
    "inline fragments nested to the parser's limit": lambda n: (
        "query { batch(requests: []) "
        + "{ items { "
        + "... on Succeeded { " * n
        + "requestId"
        + " }" * n
        + " } } }"
    ),
}
FIELDS = [
    "requestId",
    "status",
    "state",
    "__typename",
    'body(select: ["x%d"])',
    "error { code message }",
    "elements { index status }",
]


def random_document(rnd: random.Random) -> str:
    fragments = rnd.randint(0, 60)

    def selection(depth: int) -> str:
        parts = []
        for _ in range(rnd.randint(1, 16)):
            roll = rnd.random()
            if roll < 0.5:
                parts.append(rnd.choice(FIELDS).replace("%d", str(rnd.randint(0, 99))))
            elif roll < 0.7 and fragments:
                parts.append(f"...F{rnd.randrange(fragments)}")
            elif roll < 0.85 and depth:
                parts.append("... on Succeeded { " + selection(depth - 1) + " }")
            else:
                parts.append(f"a{rnd.randint(0, 60)}: requestId")
        return " ".join(parts)

    body = " ".join(f"fragment F{i} on ItemResult {{ {selection(2)} }}" for i in range(fragments))
    return "query { batch(requests: []) { items { " + selection(3) + " } } } " + body


async def timed(schema: object, query: str, context: Context) -> tuple[float, str]:
    # The collector is off while a document is timed (its pauses are the process's, not the
    # document's) and runs between documents now and then.
    gc.disable()
    try:
        started = time.perf_counter()
        result = await schema.execute(query, context_value=context)  # type: ignore[attr-defined]
        elapsed = (time.perf_counter() - started) * 1000
    finally:
        gc.enable()
    return elapsed, (result.errors or [None])[0].message[:60] if result.errors else "valid"


async def main_async(args: argparse.Namespace) -> None:
    schema = build_schema()
    context = Context(settings=Settings.from_upstream_urls(["http://127.0.0.1:9"]), send=None)
    rows = []
    for n, (name, make) in enumerate(ADVERSARIAL.items()):
        query = largest(make)
        ms, outcome = await timed(schema, query + f" # {n}", context)  # a new text: no cache
        rows.append((ms, name, tokens(query), outcome))
    rnd = random.Random(args.seed)
    times = []
    for n in range(args.random):
        query = random_document(rnd)
        if tokens(query) > TOKENS:
            continue
        ms, outcome = await timed(schema, query + f" # random {n}", context)
        times.append(ms)
        rows.append((ms, f"random document {n}", tokens(query), outcome))
    rows.sort(reverse=True)
    print(f"parse and validate, caches bypassed; documents within {TOKENS} tokens\n")
    print("| document | tokens | ms | outcome |")
    print("| --- | --- | --- | --- |")
    for ms, name, count, outcome in rows[: args.show]:
        print(f"| {name} | {count} | {ms:.1f} | {outcome} |")
    if times:
        times.sort()
        print(
            f"\n{len(times)} random documents: median {times[len(times) // 2]:.1f} ms, "
            f"worst {times[-1]:.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=300, help="random documents, at most")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--show", type=int, default=12, help="rows printed, the worst first")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
