"""Instructions the gateway process spends on one screen, counted by callgrind (issue 15).

    python benchmarks/screens.py             # about 2 minutes; needs valgrind on the PATH
    python benchmarks/screens.py --dry-run   # the same screens, run and checked, not counted

`gqlbatch serve` runs under callgrind in front of the benchmark's upstream (its own process,
on loopback, at zero latency), with counting switched on only around the measured screens.
Everything the gateway does for a screen is counted: the HTTP server, GraphQL, the engine and
its aiohttp client calls. CPU time on a shared 2-core machine moved by 3x from one hour to the
next while this was built; callgrind's count repeats to within 0.1%.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))

from run import SCREEN_QUERY, config, post_batch, process, screen, screen_for_each

HERE = Path(__file__).parent
WARM, MEASURED = 5, 20
SCREENS = {
    "naive screen (22 items)": (screen, 14.1),
    "forEach screen (4 items)": (screen_for_each, 10.1),
}
"""Each screen, and issue 15's goal in millions of instructions: its goals in ms of CPU (4 and
3), at the instructions per ms the same screens took when they were set (BENCHMARKS.md)."""


async def measure(loop: str, dry_run: bool) -> list[list[str]]:
    """One row per screen: the screen, the loop, its calls, and instructions per screen."""
    rows = []
    with (
        process(str(HERE / "upstream.py")) as (slow, _),
        process(str(HERE / "upstream.py")) as (fast, _),
    ):
        cfg = config(slow, fast)
        for label, (make, goal) in SCREENS.items():
            items = make("fast")
            with tempfile.TemporaryDirectory() as out:
                counted, calls = await _run(cfg, loop, items, Path(out), dry_run)
            per_screen = "-" if counted is None else f"{counted / MEASURED / 1e6:.2f}M"
            rows.append([label, loop, str(len(items)), str(calls), per_screen, f"{goal}M"])
    return rows


async def _run(
    cfg: str, loop: str, items: list[dict[str, Any]], out: Path, dry_run: bool
) -> tuple[int | None, int]:
    serve = ["-m", "gqlbatch", "serve", "--config", cfg, "--port", "0", "--loop", loop]
    prefix = [] if dry_run else _callgrind(out)
    proc = subprocess.Popen(
        [*prefix, sys.executable, *serve, "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=HERE.parent,
    )
    try:
        assert proc.stdout is not None
        url = next(w for w in proc.stdout.readline().split() if w.startswith("http://"))
        url = url.removesuffix("/graphql")
        async with aiohttp.ClientSession() as http:
            for _ in range(WARM):
                answer = await post_batch(http, url, items, SCREEN_QUERY)
            _count(proc.pid, on=True, dry_run=dry_run)
            for _ in range(MEASURED):
                await post_batch(http, url, items, SCREEN_QUERY)
            _count(proc.pid, on=False, dry_run=dry_run)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    calls = answer["stats"]["upstreamCalls"]
    if dry_run:
        return None, calls
    found = re.search(r"Collected : (\d+)", err)
    if found is None:
        raise SystemExit(f"callgrind counted nothing:\n{err[-2000:]}")
    return int(found[1]), calls


def _callgrind(out: Path) -> list[str]:
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}/cg"]


def _count(pid: int, *, on: bool, dry_run: bool) -> None:
    if not dry_run:
        subprocess.run(
            ["callgrind_control", "-i", "on" if on else "off", str(pid)],
            capture_output=True,
            check=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="run the screens, count nothing")
    parser.add_argument(
        "--loop", action="append", choices=["uvloop", "asyncio"], help="default: both"
    )
    args = parser.parse_args()
    if not args.dry_run and shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    print("| screen | event loop | sub-requests | upstream calls | instructions | goal |")
    print("| --- | --- | --- | --- | --- | --- |")
    for loop in args.loop or ["uvloop", "asyncio"]:
        for row in asyncio.run(measure(loop, args.dry_run)):
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
