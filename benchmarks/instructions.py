"""Instructions per sub-request of the GraphQL door and the engine, counted by callgrind.

    python benchmarks/instructions.py            # about 30 s; needs valgrind on the PATH

Wall time on a shared 2-core machine moves by ±20% from one minute to the next, so changes of
a few percent cannot be seen in it. Callgrind counts instructions, which repeat to within 0.1%.
This runs `schema.execute` of a batch against a fake upstream (no HTTP) with 1 item and with
101 items, each under callgrind with counting switched on only around two warm batches, and
prints the difference per item: what one more sub-request costs the gateway's own code. It
does so three times: for a batch seen for the first time (planned anew, nothing kept); for a
batch sent again, as a screen is, whose plan the server kept (`execution.plans`); and for
a batch whose first item changes every time (the same screen for another user), whose plan
is never kept but whose other items were parsed before.

    python benchmarks/instructions.py --child 101    # one measured run, without valgrind
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

QUERY = """mutation Bench($r: [SubRequestInput!]!) {
  batch(requests: $r) { items { status body } stats { upstreamCalls criticalPathMs } }
}"""
ROUNDS = 2


def _callgrind_instrumentation(on: bool) -> None:
    # Outside valgrind the control tool finds no process to talk to; that is harmless.
    if shutil.which("callgrind_control"):
        subprocess.run(
            ["callgrind_control", "-i", "on" if on else "off", str(os.getpid())],
            capture_output=True,
            check=False,
        )


MODES = {
    "new": "a new batch",
    "again": "a batch sent again",
    "changed": "a batch with its first item changed",
}


async def _child(items: int, mode: str) -> None:
    from gqlbatch import Settings
    from gqlbatch.core.wire import UpstreamCall, UpstreamResponse
    from gqlbatch.doors.graphql.context import Context
    from gqlbatch.doors.graphql.schema import build_schema
    from gqlbatch.execution.plans import PlanCache

    async def send(_call: UpstreamCall) -> UpstreamResponse:
        await asyncio.sleep(0)
        body: dict[str, Any] = {"id": 1, "userId": 1, "title": "post 1", "body": "text"}
        return UpstreamResponse(200, (("Content-Type", "application/json"),), body)

    settings = Settings.from_upstream_urls(["http://127.0.0.1:9"], max_items=1000)
    schema = build_schema()
    context = Context(settings, send, plans=None if mode == "new" else PlanCache())
    # Every round's variables are made before counting starts: only the batch is counted.
    firsts = range(1_000_000, 1_000_002 + ROUNDS) if mode == "changed" else [1] * (2 + ROUNDS)
    batches = [
        {
            "r": [
                {"path": f"/posts/{first}"},
                *({"path": f"/posts/{i}"} for i in range(2, items + 1)),
            ]
        }
        for first in firsts
    ]
    for variables in batches[:2]:  # warm: parser and validation caches, first-call imports
        await schema.execute(QUERY, variable_values=variables, context_value=context)
    _callgrind_instrumentation(on=True)
    for variables in batches[2:]:
        result = await schema.execute(QUERY, variable_values=variables, context_value=context)
    _callgrind_instrumentation(on=False)
    if result.errors:
        raise SystemExit(f"the batch failed: {result.errors}")


def _instructions(items: int, mode: str) -> int:
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out}/callgrind.out",
                sys.executable,
                __file__,
                "--child",
                str(items),
                "--mode",
                mode,
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"valgrind failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return int(found[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", type=int, metavar="ITEMS", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, default="new", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        asyncio.run(_child(args.child, args.mode))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    for mode, label in MODES.items():
        one, many = _instructions(1, mode), _instructions(101, mode)
        per_item = (many - one) / (100 * ROUNDS)
        print(
            f"instructions per sub-request (schema.execute, fake upstream), {label}: "
            f"{per_item / 1000:.0f}k"
        )


if __name__ == "__main__":
    main()
