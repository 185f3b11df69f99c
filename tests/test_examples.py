"""Smoke test: every file in examples/ runs against a live gateway in front of the demo API."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gqlbatch import Settings, create_app, running
from gqlbatch.ops.demo import sample_api

EXAMPLES = Path(__file__).parent.parent / "examples"
REST_EXAMPLES = {"rest_batch.py", "multipart_batch.sh", "job.py"}
EXPECTED = {
    "screen.py": ["user 1: Ada", "posts, first: Post 1", "3 sub-requests, 3 upstream calls"],
    "stream.py": [
        "item user: 200",
        "item posts: 200",
        "item comments: 200",
        "done: 3 sub-requests",
    ],
    "websocket.py": [
        "graphql-ws: 200 {'id': 1, 'name': 'Ada'",
        "graphql-ws: 200 {'id': 3, 'name': 'Alan'",
    ],
    "job.py": ["accepted: 202 RUNNING", "job: SUCCEEDED 5/5", "post-5 201 Imported 5"],
    "rest_batch.py": ["1 200 {'id': 3, 'name': 'Alan'", "2 201 {'userId': 3, 'title': 'Posted"],
    "multipart_batch.sh": [
        "Content-ID: <create>",
        "HTTP/1.1 201 Created",
        "Content-ID: <read>",
        "HTTP/1.1 200 OK",
        '"title":"Posted in a multipart batch"',
    ],
    "batch.sh": [
        '"title":"From curl"',
        '"requestId":"read","state":"SUCCEEDED"',
        "DEPENDENCY_CYCLE",
        "UNKNOWN_DEPENDENCY",
        "DUPLICATE_REQUEST_ID",
    ],
}


@pytest.fixture
async def demo_url() -> AsyncIterator[str]:
    async with (
        running(sample_api()) as api,
        running(create_app(Settings.from_upstream_urls([api]))) as url,
    ):
        yield url


def test_every_example_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES.iterdir() if p.suffix in (".py", ".sh")) == sorted(
        EXPECTED
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_example_runs(name: str, demo_url: str) -> None:
    path = EXAMPLES / name
    command = [sys.executable, str(path)] if path.suffix == ".py" else ["bash", str(path)]
    endpoint = demo_url + ("/batch" if name in REST_EXAMPLES else "/graphql")
    proc = await asyncio.create_subprocess_exec(
        *command,
        endpoint,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(EXAMPLES.parent)},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    text = out.decode()
    assert proc.returncode == 0, err.decode()
    for expected in EXPECTED[name]:
        assert expected in text, text


def test_the_examples_extra_installs_what_the_python_examples_import() -> None:
    import ast
    import tomllib

    project = tomllib.loads((EXAMPLES.parent / "pyproject.toml").read_text())["project"]
    extra = {
        req.split("[")[0].split(">")[0] for req in project["optional-dependencies"]["examples"]
    }
    installed = {req.split(">")[0].split("[")[0] for req in project["dependencies"]} | extra
    for path in EXAMPLES.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {
            (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
        }
        third_party = {m for m in imported if m not in sys.stdlib_module_names}
        assert third_party <= installed | {"gqlbatch"}, (path.name, third_party - installed)
