"""The benchmark runner still runs: a smoke test with tiny latency and few rounds.

It asserts that the table is produced and that the call counts are right; it never asserts
on time, which is what the benchmark itself reports.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

RUNNER = Path(__file__).parent.parent / "benchmarks" / "run.py"


async def test_benchmark_runner_prints_its_table() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(RUNNER),
        "--only",
        "chain,screen",
        "--latency-ms",
        "1",
        "--runs",
        "2",
        "--seconds",
        "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 50)
    assert proc.returncode == 0, err.decode()
    rows = {
        line.split("|")[1].strip(): line.split("|")
        for line in out.decode().splitlines()
        if line.startswith("| ")
    }
    assert rows["chain of 5: gqlbatch"][3].strip() == "5"
    assert rows["screen, no bulk routes"][3].strip() == "12"
    assert rows["screen, bulk routes"][3].strip() == "3"


@pytest.mark.parametrize("mode", ["new", "again", "changed"])
async def test_instruction_count_harness_runs_a_batch(mode: str) -> None:
    # benchmarks/instructions.py runs itself under valgrind; its measured part must keep
    # working without it (valgrind is not a test dependency).
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(RUNNER.parent / "instructions.py"),
        "--child",
        "3",
        "--mode",
        mode,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 50)
    assert proc.returncode == 0, err.decode()


async def run_benchmark(script: str, *args: str) -> dict[str, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(RUNNER.parent / script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return {
        line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
        for line in out.decode().splitlines()
        if line.startswith("| ") and not line.startswith("| ---")
    }


async def test_attack_suite_prints_its_table() -> None:
    rows = await run_benchmark(
        "attacks.py", "--only", "fragment-tower-650-bytes", "--seconds", "0.5", "--rounds", "3"
    )
    requests, *_ = rows["fragment-tower-650-bytes"]
    assert 1 <= int(requests) <= 3


async def test_admission_benchmark_prints_its_table() -> None:
    rows = await run_benchmark("admission.py", "--seconds", "0.5")
    answered, refused, *_ = rows["16 clients, 22-item screens"]
    assert int(answered) > 0 and refused == "0"


async def test_validation_benchmark_prints_its_table() -> None:
    rows = await run_benchmark("validation.py", "--random", "3")
    assert "32 conflicting fragments" in rows


async def test_scaling_benchmark_prints_its_table(redis_url: str) -> None:
    # redis_url: skipped, like the store's tests, where redis-server is not installed.
    rows = await run_benchmark("scaling.py", "--runs", "1", "--seconds", "0.5")
    assert float(rows["screens per second, 16 clients, 2 workers sharing Redis"][0]) > 0
    assert rows["one-item batch p50, state in Redis"][0].endswith(" ms")


async def test_screen_instruction_harness_runs_its_screens() -> None:
    # benchmarks/screens.py counts under valgrind; --dry-run runs the same screens through a
    # real gateway, and the rows still carry their upstream calls. One loop: each gateway
    # started costs the suite 2 s, and the loops run the same code.
    rows = await run_benchmark("screens.py", "--dry-run", "--loop", "uvloop")
    assert rows["naive screen (22 items)"][1:3] == ["22", "12"]
    assert rows["forEach screen (4 items)"][1:3] == ["4", "12"]


async def test_store_benchmark_prints_its_table(redis_url: str) -> None:
    # redis_url: skipped, like the store's tests, where redis-server is not installed.
    # The Redis run only: the memory run is the same gateway without the store.
    rows = await run_benchmark(
        "store.py", "--seconds", "0.5", "--batches", "3", "--settle", "0", "--stores", "redis"
    )
    batches, _rate, errors, internal, *_ = rows["redis"]
    assert int(batches) > 0 and (errors, internal) == ("0", "0")
