"""GraphiQL without a CDN: its files fetched once from an npm registry (here a real one on
loopback, serving tarballs made by the test) and checked against the page's integrity hashes;
then served by the gateway. Without them the page says it needs internet."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gqlbatch import Settings, create_app
from gqlbatch.core.errors import ConfigError
from gqlbatch.doors.graphql.graphiql import assets_of, local_page
from gqlbatch.doors.graphql.view import graphiql_page
from gqlbatch.ops.cli import main
from gqlbatch.ops.graphiql_assets import download

FILES = {
    ("graphiql", "3.8.3", "graphiql.min.js"): b"window.GraphiQL = {};",
    ("@graphiql/plugin-explorer", "1.0.2", "dist/style.css"): b".explorer {}",
}


def sri(content: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(content).digest()).decode()


def page(files: dict[tuple[str, str, str], bytes] = FILES) -> str:
    tags = [
        f'<script src="https://unpkg.com/{p}@{v}/{path}"\n  integrity="{sri(body)}"></script>'
        for (p, v, path), body in files.items()
    ]
    return "<html>" + "\n".join(tags) + "</html>"


def tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@pytest.fixture
async def registry(aiohttp_server: Any) -> tuple[str, dict[str, bytes], list[str]]:
    """An npm registry's tarball routes; the test sets what each tarball holds."""
    tarballs: dict[str, bytes] = {}
    asked: list[str] = []

    async def tgz(request: web.Request) -> web.Response:
        asked.append(request.path)
        body = tarballs.get(request.path)
        return web.Response(body=body) if body is not None else web.Response(status=404)

    app = web.Application()
    app.router.add_get("/{tail:.*}", tgz)
    server = await aiohttp_server(app, host="127.0.0.1")
    return str(server.make_url("")).rstrip("/"), tarballs, asked


async def test_files_are_fetched_once_per_package_and_checked(
    registry: Any, tmp_path: Path
) -> None:
    url, tarballs, asked = registry
    tarballs["/graphiql/-/graphiql-3.8.3.tgz"] = tarball(
        {"graphiql.min.js": FILES[("graphiql", "3.8.3", "graphiql.min.js")]}
    )
    tarballs["/@graphiql/plugin-explorer/-/plugin-explorer-1.0.2.tgz"] = tarball(
        {"dist/style.css": FILES[("@graphiql/plugin-explorer", "1.0.2", "dist/style.css")]}
    )
    written = await download(page(), tmp_path, url)
    assert [p.relative_to(tmp_path).as_posix() for p in written] == [
        "graphiql@3.8.3/graphiql.min.js",
        "@graphiql/plugin-explorer@1.0.2/dist/style.css",
    ]
    assert (tmp_path / "graphiql@3.8.3/graphiql.min.js").read_bytes() == b"window.GraphiQL = {};"
    assert len(asked) == 2


async def test_a_file_whose_hash_differs_is_refused(registry: Any, tmp_path: Path) -> None:
    url, tarballs, _ = registry
    tarballs["/graphiql/-/graphiql-3.8.3.tgz"] = tarball({"graphiql.min.js": b"tampered"})
    only = {k: v for k, v in FILES.items() if k[0] == "graphiql"}
    with pytest.raises(ConfigError, match=r"sha384 is .* not the"):
        await download(page(only), tmp_path, url)
    assert not (tmp_path / "graphiql@3.8.3/graphiql.min.js").exists()
    with pytest.raises(ConfigError, match="answered 404"):
        await download(page(), tmp_path, url + "/elsewhere")


def test_strawberrys_page_names_the_files_it_loads() -> None:
    assets = assets_of(graphiql_page())
    assert {a.package for a in assets} >= {"react", "react-dom", "graphiql"}
    assert all(len(a.sha384) == 64 for a in assets)  # sha384, base64
    assert "https://unpkg.com/" not in local_page(graphiql_page())


def test_the_command_says_what_went_wrong_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["graphiql", "--download", str(tmp_path), "--registry", "http://127.0.0.1:9"])
    assert code == 2
    assert capsys.readouterr().err.startswith("gqlbatch: error: http://127.0.0.1:9/")


async def test_graphiql_is_served_from_local_files_or_says_it_needs_internet(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    asset = tmp_path / "graphiql@3.8.3" / "graphiql.min.js"
    asset.parent.mkdir()
    asset.write_bytes(b"window.GraphiQL = {};")
    upstreams = ["http://127.0.0.1:1"]
    local = await aiohttp_client(
        create_app(Settings.from_upstream_urls(upstreams, graphiql_assets_dir=str(tmp_path)))
    )
    html = await (await local.get("/graphql", headers={"Accept": "text/html"})).text()
    assert 'src="/graphiql-assets/graphiql@3.8.3/graphiql.min.js"' in html
    assert "unpkg.com" not in html and "integrity=" in html  # the browser still checks
    served = await local.get("/graphiql-assets/graphiql@3.8.3/graphiql.min.js")
    assert (served.status, await served.read()) == (200, b"window.GraphiQL = {};")

    online = await aiohttp_client(create_app(Settings.from_upstream_urls(upstreams)))
    html = await (await online.get("/graphql", headers={"Accept": "text/html"})).text()
    assert "needs internet access" in html and 'href="/playground"' in html

    with pytest.raises(ConfigError, match="not a folder"):
        create_app(Settings.from_upstream_urls(upstreams, graphiql_assets_dir=str(tmp_path / "no")))
