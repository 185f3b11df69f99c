"""Every `graphql` block in the README runs as written against the demo's sample API."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from gqlbatch import create_app
from gqlbatch.cli import demo_settings
from tests.conftest import graphql_caller

README = Path(__file__).parent.parent / "README.md"
BLOCKS = re.findall(r"```graphql\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


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
