"""The client recipes of docs/clients.md, run: Apollo Client, urql and graphql-request, in
Node, against a real gateway in front of the demo's sample API (tests/clients/clients.mjs).

The packages are pinned by the lockfiles of tests/node/clients and tests/node/codegen, which
`.ci/run` installs (tests/npm.py). Without node, or without them, the tests are skipped,
saying so.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gqlbatch import create_app, running
from gqlbatch.core.openapi import Contract
from gqlbatch.doors.graphql.schema import answer_types, build_schema, possible_types
from gqlbatch.ops.cli import demo_settings
from gqlbatch.ops.demo import openapi_document
from tests.npm import npm_packages

DEMO_CONTRACTS = {"demo": Contract(openapi_document(), "the demo's sample API")}

SCRIPT = Path(__file__).parent / "clients" / "clients.mjs"


@pytest.fixture(scope="module")
def clients_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    packages = npm_packages("clients", why="run the JavaScript clients")
    # ESM resolves bare imports from the script's folder: the script runs beside node_modules.
    folder = tmp_path_factory.mktemp("clients")
    (folder / "node_modules").symlink_to(packages / "node_modules")
    shutil.copy(SCRIPT, folder / SCRIPT.name)
    return folder


@pytest.mark.timeout(120)
async def test_the_javascript_clients_work_as_docs_clients_md_says(
    clients_folder: Path, sample_url: str
) -> None:
    types = json.dumps(possible_types(build_schema(answers=answer_types(DEMO_CONTRACTS))))
    async with running(create_app(demo_settings(sample_url, {}))) as url:
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(clients_folder / SCRIPT.name),
            url + "/graphql",
            types,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode == 0, err.decode()
    found = json.loads(out.decode().strip().splitlines()[-1])
    ada = {"id": 1, "name": "Ada", "email": "ada@example.com"}
    # Apollo: a fragment on ItemResult loses its fields without possibleTypes, silently.
    assert found["withoutPossibleTypes"] == {"__typename": "Succeeded"}
    assert found["withPossibleTypesOnly"]["body"] == ada
    # Two screens on one batch evict each other, unless the type policies merge them.
    assert found["twoScreensWithoutPolicies"] == {"status": False, "body": True}
    assert found["twoScreensWithPolicies"] == {"status": True, "body": True}
    # Persisted queries over GET: the miss, the registration, then a hit.
    assert found["persisted"] == {"first": 200, "second": 200, "sent": ["hash"] * 3}
    assert found["batchHttpLink"] == [200, 200]
    assert found["urql"] == found["graphcache"] == "Ada"
    # Typed data: one User:1 in Apollo's cache, from two batches that read different fields.
    assert found["normalizedUser"] == {
        "__typename": "User",
        "id": "1",  # an ID: Apollo keys User:1 by it
        "name": "Ada",
        "email": "ada@example.com",
    }
    assert found["graphqlRequest"] == {"one": "Ada", "batched": [200, 200]}
    assert found["warnings"] == []


TYPED = Path(__file__).parent / "clients" / "typed"
SCHEMA = Path(__file__).parent.parent / "schema" / "schema.graphql"


def _runner(cache: Path, work: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Runs a tool of *cache*'s node_modules in *work*, capturing what it prints."""
    tools = cache / "node_modules" / ".bin"

    def run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(tools / tool), *args], cwd=work, capture_output=True, text=True, timeout=120
        )

    return run


@pytest.mark.timeout(240)
def test_codegen_types_a_screen_that_narrows_item_results(tmp_path: Path) -> None:
    """GraphQL Code Generator's client preset on schema/schema.graphql: the screen of
    tests/clients/typed/src/screen.ts compiles, narrowing items by __typename; a field read
    on the wrong member does not."""
    cache = npm_packages("codegen", why="run GraphQL Code Generator")
    work = tmp_path / "typed"
    shutil.copytree(TYPED, work)
    shutil.copy(SCHEMA, work / "schema.graphql")
    (work / "node_modules").symlink_to(cache / "node_modules")
    run = _runner(cache, work)

    generated = run("graphql-codegen", "--config", "codegen.ts")
    assert generated.returncode == 0, generated.stdout + generated.stderr
    compiled = run("tsc", "-p", ".")
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    screen = work / "src" / "screen.ts"
    screen.write_text(
        screen.read_text().replace("const body = item.body", "item.error; const body = item.body")
    )
    wrong = run("tsc", "-p", ".")
    assert wrong.returncode != 0
    assert "Property 'error' does not exist" in wrong.stdout


TYPED_SCREEN = Path(__file__).parent.parent / "examples" / "typed-screen"


@pytest.mark.timeout(240)
def test_the_typed_screen_example_compiles_and_refuses_a_typo(tmp_path: Path) -> None:
    """examples/typed-screen as its README runs it: the schema with the demo's OpenAPI types,
    codegen, then tsc. Reading `nmae` on the User its document describes does not compile."""
    cache = npm_packages("codegen", why="run GraphQL Code Generator")
    # Laid out as a checkout after the README's install: examples/typed-screen, and .venv
    # two levels up, whose gqlbatch `npm run schema` runs (issue 27: it needed the venv on
    # PATH).
    work = tmp_path / "examples" / "typed-screen"
    shutil.copytree(TYPED_SCREEN, work, ignore=shutil.ignore_patterns("node_modules", "gql"))
    (work / "node_modules").symlink_to(cache / "node_modules")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "gqlbatch").symlink_to(Path(sys.executable).parent / "gqlbatch")
    schema = subprocess.run(
        ["npm", "run", "schema"], cwd=work, capture_output=True, text=True, timeout=120
    )
    assert schema.returncode == 0, schema.stdout + schema.stderr
    assert "type User {" in (work / "schema.graphql").read_text()
    run = _runner(cache, work)

    generated = run("graphql-codegen", "--config", "codegen.ts")
    assert generated.returncode == 0, generated.stdout + generated.stderr
    types = (work / "src" / "gql" / "graphql.ts").read_text()
    # The document's User (only `id` required), not `unknown`:
    assert "UserCardFragment = { id: string, name: string | null, email: string | null }" in types
    compiled = run("tsc", "-p", ".")
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    screen = work / "src" / "screen.ts"
    screen.write_text(screen.read_text().replace("user.data.name ??", "user.data.nmae ??"))
    wrong = run("tsc", "-p", ".")
    assert wrong.returncode != 0
    assert "Property 'nmae' does not exist" in wrong.stdout, wrong.stdout


CLIENTS_MD = (Path(__file__).parent.parent / "docs" / "clients.md").read_text(encoding="utf-8")
RECIPES = re.findall(r"```js\n(// recipe: ([\w-]+\.mjs)\..*?)```", CLIENTS_MD, re.S)
EXAMPLE_GATEWAY = "https://gateway.example.com"


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("code", "name"), RECIPES, ids=[name for _, name in RECIPES])
async def test_each_recipe_of_docs_clients_md_runs_as_printed(
    clients_folder: Path, sample_url: str, code: str, name: str
) -> None:
    # Issue 27: the persisted-query recipe crashed as written (GET hashes through
    # BatchHttpLink), and fetched /possible-types.json, which answered 404. Each recipe now
    # runs as printed, only the gateway's address replaced, and prints its answer with no
    # warning (Apollo and urql warn on the console).
    assert EXAMPLE_GATEWAY in code
    async with running(create_app(demo_settings(sample_url, {}))) as url:
        script = clients_folder / name
        script.write_text(code.replace(EXAMPLE_GATEWAY, url), encoding="utf-8")
        proc = await asyncio.create_subprocess_exec(
            "node", str(script), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode == 0, err.decode()
    assert err.decode() == ""
    assert out.decode().split() in (["Ada", "10"], ["200", "200"]), out.decode()


def test_docs_clients_md_has_its_recipes() -> None:
    assert [name for _, name in RECIPES] == ["apollo.mjs", "apollo-batched.mjs", "urql.mjs"]
