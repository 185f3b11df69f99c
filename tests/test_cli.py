"""The command line: exit codes, one-line errors, export-schema, and the demo as a process."""

from __future__ import annotations

import asyncio
import collections
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gqlbatch.doors.graphql.schema import build_schema
from gqlbatch.ops.cli import main
from gqlbatch.ops.demo import EXAMPLE_QUERY
from tests.processes import SERVING, gqlbatch_process, gqlbatch_server, printed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve"], "one of the arguments --config --upstream is required"),
        (["serve", "--upstream", "ftp://x"], "must start with http:// or https://"),
        (["serve", "--upstream", "http://u:p@x"], "must not carry credentials"),
        (
            ["serve", "--upstream", "http://a", "--upstream", "http://b"],
            "name each of several upstreams as name=URL",
        ),
        (
            ["serve", "--upstream", "a=http://a", "--upstream", "a=http://b"],
            "--upstream names must be unique",
        ),
        (["serve", "--upstream", "1bad=http://a"], "upstream name '1bad' must be a letter"),
        (["demo", "--port", "abc"], "invalid int value: 'abc'"),
        (["demo", "--port", "99999"], "argument --port: 99999 is not a port (0 to 65535)"),
        (["demo", "--port", "-1"], "argument --port: -1 is not a port (0 to 65535)"),
        (["demo", "--api-port", "70000"], "argument --api-port: 70000 is not a port"),
        (["demo", "--latency-ms", "-5"], "argument --latency-ms: -5 is not a duration"),
        (["demo", "--latency-ms", "nan"], "argument --latency-ms: nan is not a duration"),
        (["nonsense"], "invalid choice: 'nonsense'"),
    ],
    ids=[
        "no-upstream",
        "scheme",
        "userinfo",
        "unnamed",
        "duplicate",
        "bad-name",
        "bad-port",
        "port-too-high",
        "port-negative",
        "api-port-too-high",
        "negative-latency",
        "nan-latency",
        "bad-command",
    ],
)
def test_bad_flags_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gqlbatch: error: ")
    assert message in err


def test_export_schema_prints_the_sdl(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export-schema"]) == 0
    assert capsys.readouterr().out == build_schema().as_str() + "\n"


def test_export_schema_writes_a_file(tmp_path: Path) -> None:
    target = tmp_path / "schema" / "schema.graphql"
    assert main(["export-schema", "-o", str(target)]) == 0
    assert target.read_text() == build_schema().as_str() + "\n"


async def test_demo_command_serves_the_playground_graphiql_and_runs_its_example() -> None:
    # The README's first command, as a real process: it must print a URL that works.
    async with (
        gqlbatch_process("demo", printing=r"Open (http://\S+)/ for the playground") as url,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(url + "/", allow_redirects=False) as landing:
            assert (landing.status, landing.headers["Location"]) == (302, "/playground")
        async with http.get(url + "/playground") as playground:
            assert "resultOf(posts)[*].id" in await playground.text()  # the screen, loaded
        async with http.get(url + "/graphiql", allow_redirects=False) as graphiql:
            assert graphiql.headers["Location"].startswith("/graphql?q=")
        async with http.get(url + "/graphql", headers={"Accept": "text/html"}) as page:
            assert "GraphiQL" in await page.text()
        body = {"query": EXAMPLE_QUERY, "operationName": "Screen"}
        async with http.post(url + "/graphql", json=body) as resp:
            screen = json.loads(await resp.text())["data"]["batch"]
        body = {"query": EXAMPLE_QUERY, "operationName": "Features"}
        async with http.post(url + "/graphql", json=body) as resp:
            data = json.loads(await resp.text())
    assert screen["stats"]["upstreamCalls"] <= 4
    assert len(screen["comments"]["elements"]) == 10
    assert screen["user"]["data"] == {"name": "Ada", "email": "ada@example.com"}  # typed
    assert [a["name"] for a in screen["authors"]["data"]["items"]] == ["Ada"] * 10
    items = {i["requestId"]: i for i in data["data"]["batch"]["items"]}
    assert items["readBack"]["body"]["title"] == "Hello from gqlbatch"
    assert items["sameUser"]["coalesced"] is True
    assert items["dependent"]["error"]["code"] == "FAILED_DEPENDENCY"


@pytest.mark.parametrize(
    ("loop", "runs_on"), [("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")]
)
async def test_serve_command_fronts_an_upstream(sample_url: str, loop: str, runs_on: str) -> None:
    # The line it prints names the loop it is running on, read from the running loop itself.
    query = """mutation { batch(requests: [
        {requestId: "create", method: POST, path: "/posts", body: {title: "t"}}
        {requestId: "read", path: "/posts/{resultOf(create).id}"}
    ]) { items { status body } } }"""
    printing = SERVING + rf" .*\({runs_on}\)$"
    async with (
        gqlbatch_process(
            "serve", "--upstream", sample_url, "--loop", loop, printing=printing
        ) as url,
        aiohttp.ClientSession() as http,
        http.post(url + "/graphql", json={"query": query}) as resp,
    ):
        items = (await resp.json())["data"]["batch"]["items"]
    assert [i["status"] for i in items] == [201, 200]
    assert items[1]["body"] == items[0]["body"]


async def test_auto_falls_back_to_asyncio_where_uvloop_is_missing(
    sample_url: str, tmp_path: Path
) -> None:
    # As on Windows, where uvloop is not installed: a module that fails to import stands in.
    (tmp_path / "uvloop.py").write_text("raise ImportError('no uvloop here')\n")
    async with (
        gqlbatch_server(
            "serve",
            "--upstream",
            sample_url,
            printing=SERVING + r" .*\(asyncio\)$",
            env={"PYTHONPATH": str(tmp_path)},
        ) as (url, _),
        aiohttp.ClientSession() as http,
        http.get(url + "/healthz") as resp,
    ):
        assert resp.status == 200


def test_asking_for_a_missing_uvloop_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    status = main(["serve", "--upstream", "http://127.0.0.1:9", "--loop", "uvloop"])
    assert status == 2
    assert "--loop uvloop: uvloop is not installed" in capsys.readouterr().err


def test_bad_config_file_exits_2_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gqlbatch.toml"
    config.write_text('[upstreams.api]\nbase_url = "http://127.0.0.1:1"\n[limits]\nmax_items = 0\n')
    assert main(["serve", "--config", str(config)], environ={}) == 2
    err = capsys.readouterr().err
    assert err == f"gqlbatch: error: {config}: limits.max_items must be a positive integer, got 0\n"
    assert main(["serve", "--config", str(tmp_path / "nope.toml")], environ={}) == 2
    assert "cannot read" in capsys.readouterr().err


def test_environment_overrides_reach_serve(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["serve", "--upstream", "http://127.0.0.1:1"], environ={"GQLBATCH_LIMITS__MAX_ITEMS": "-3"}
    )
    assert code == 2
    # The variable is named, not the flag it overrides.
    assert capsys.readouterr().err == (
        "gqlbatch: error: GQLBATCH_LIMITS__MAX_ITEMS: limits.max_items must be a positive "
        "integer, got -3\n"
    )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"GQLBATCH_LIMITS__NOPE": "1"}, "GQLBATCH_LIMITS__NOPE: unknown key limits.nope"),
        ({"GQLBATCH_SERVER__PORT": "-1"}, "GQLBATCH_SERVER__PORT: server.port must be a port"),
        ({"GQLBATCH_LIMITS": "1"}, "GQLBATCH_LIMITS: limits must be a table"),
    ],
)
def test_a_bad_variable_is_named(
    environ: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--upstream", "http://127.0.0.1:1"], environ=environ) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"gqlbatch: error: {message}"), err


def test_a_port_out_of_range_in_the_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gqlbatch.toml"
    config.write_text('[server]\nport = 99999\n[upstreams.a]\nbase_url = "http://127.0.0.1:1"\n')
    assert main(["serve", "--config", str(config)], environ={}) == 2
    assert capsys.readouterr().err == (
        f"gqlbatch: error: {config}: server.port must be a port (0 to 65535), got 99999\n"
    )


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib import metadata

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"gqlbatch {metadata.version('gqlbatch')}\n"


async def test_serve_with_a_config_file_uses_its_bulk_routes(
    tmp_path: Path, sample_url: str
) -> None:
    config = tmp_path / "gqlbatch.toml"
    config.write_text(
        f'[upstreams.api]\nbase_url = "{sample_url}"\n'
        '[[upstreams.api.bulk]]\nmatch = "/users/{id}"\n'
    )
    query = (
        '{ batch(requests: [{path: "/users/1"}, {path: "/users/2"}]) '
        "{ items { bulkCall } stats { upstreamCalls } } }"
    )
    async with (
        gqlbatch_process("serve", "--config", str(config), printing=SERVING) as url,
        aiohttp.ClientSession() as http,
        http.post(url + "/graphql", json={"query": query}) as resp,
    ):
        batch = (await resp.json())["data"]["batch"]
    assert batch["stats"]["upstreamCalls"] == 1
    assert batch["items"][0]["bulkCall"] == "GET /users?id=1&id=2"


async def test_sigterm_stops_the_server_cleanly(sample_url: str) -> None:
    # Platforms stop containers with SIGTERM: the server must close its listener and pools
    # and exit 0, not be killed mid-request.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gqlbatch",
        "serve",
        "--upstream",
        sample_url,
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    url = await asyncio.wait_for(printed(proc, SERVING, collections.deque()), 20)
    async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as resp:
        assert resp.status == 200
    proc.terminate()
    assert await asyncio.wait_for(proc.wait(), 10) == 0
    _, err = await proc.communicate()
    assert b"Traceback" not in err


async def test_demo_puts_its_sample_api_on_the_port_asked() -> None:
    import socket

    with socket.socket() as probe:  # a port free a moment ago; the demo binds it next
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with (
        gqlbatch_process(
            "demo", "--api-port", str(port), printing=r"sample REST API at (http://\S+) "
        ) as api_url,
        aiohttp.ClientSession() as http,
    ):
        assert api_url == f"http://127.0.0.1:{port}"
        async with http.get(api_url + "/users/1") as resp:
            assert (await resp.json())["id"] == 1


def test_export_schema_prints_apollos_possible_types(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export-schema", "--possible-types"]) == 0
    types = json.loads(capsys.readouterr().out)
    assert types["ItemResult"] == ["Succeeded", "Failed", "Skipped", "Cancelled"]


def test_export_schema_prints_graphcache_keys(capsys: pytest.CaptureFixture[str]) -> None:
    # urql's graphcache warns "Invalid key" for each type without an id and no `keys` entry
    # (issue 27): this map names every object type's key, null for embedded ones.
    assert main(["export-schema", "--demo", "--graphcache-keys"]) == 0
    keys = json.loads(capsys.readouterr().out)
    assert keys["User"] == keys["Post"] == "id"
    assert keys["BatchResult"] is None and keys["Succeeded"] is None
    assert "Mutation" not in keys and "Query" not in keys


async def test_the_gateway_serves_the_possible_types_of_the_schema_it_serves(
    make_gateway: Any, sample_url: str
) -> None:
    # docs/clients.md fetched /possible-types.json, which answered 404 (issue 27). It is the
    # running schema's, typed answers included, as export-schema prints it for the same.
    gateway = await make_gateway(sample_url)
    answer = await gateway.get("/possible-types.json")
    assert answer.status == 200 and answer.content_type == "application/json"
    assert (await answer.json())["ItemResult"] == ["Succeeded", "Failed", "Skipped", "Cancelled"]


def test_the_demo_honours_the_variables_its_help_names(capsys: pytest.CaptureFixture[str]) -> None:
    # Issue 27: the README's demo line did not say that these reach it.
    from gqlbatch.ops.cli import demo_settings

    env = {
        "GQLBATCH_GRAPHIQL__ASSETS_DIR": "/var/lib/gqlbatch/graphiql",
        "GQLBATCH_CORS__ORIGINS": '["http://localhost:5173"]',
    }
    settings = demo_settings("http://127.0.0.1:9", env)
    assert settings.graphiql_assets_dir == "/var/lib/gqlbatch/graphiql"
    assert settings.cors.origins == ("http://localhost:5173",)
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert all(name in shown for name in env)
