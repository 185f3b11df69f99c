"""Every `graphql` and `curl` block of the README and of docs/ runs as written against the
demo's sample API."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from gqlbatch import create_app
from gqlbatch.ops.cli import demo_settings
from tests.conftest import graphql_caller

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
TEXT = "\n".join(
    p.read_text(encoding="utf-8") for p in [README, *sorted((ROOT / "docs").glob("*.md"))]
)
BLOCKS = re.findall(r"```graphql\n(.*?)```", TEXT, re.S)


def test_readme_has_graphql_examples() -> None:
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize(
    "block", BLOCKS, ids=[re.search(r"(?:mutation|query) (\w+)", b)[1] for b in BLOCKS]
)
async def test_readme_example_runs(block: str, aiohttp_client: Any, sample_url: str) -> None:
    client = await aiohttp_client(create_app(demo_settings(sample_url, {})))
    result = await graphql_caller(client)(block)
    expected = re.search(r"^# expect: (\w+)", block, re.M)
    if expected:
        assert result["errors"][0]["extensions"]["code"] == expected[1], result
    else:
        assert "errors" not in result, result
        assert result["data"]["batch"]
    if "NaiveScreen" in block:
        assert result["data"]["batch"]["stats"]["upstreamCalls"] == 3


CURLS = [
    b
    for b in re.findall(r"```bash\n(.*?)```", TEXT, re.S)
    if "127.0.0.1:8000/" in b and ("curl" in b or "examples/" in b)
]


def test_readme_has_curl_examples() -> None:
    assert len(CURLS) >= 3


@pytest.mark.parametrize("block", CURLS, ids=[f"curl{i}" for i in range(len(CURLS))])
async def test_readme_shell_example_runs(block: str, aiohttp_server: Any, sample_url: str) -> None:
    server = await aiohttp_server(create_app(demo_settings(sample_url, {})), host="127.0.0.1")
    script = block.replace("http://127.0.0.1:8000", str(server.make_url("")).rstrip("/"))
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        "set -euo pipefail\n" + script,
        cwd=README.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert out.strip()
    assert not out.lstrip().startswith(b'{"error"'), out  # a refused batch, not a response
