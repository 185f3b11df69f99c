"""The Aspose Words SDK (`aspose-words-cloud` from PyPI), unchanged, against gqlbatch: its own
batch code writes its own bytes to its own path (issue 27).

The upstream is a real aiohttp server on 127.0.0.1 in Aspose's place, recording what it
receives. The SDK is synchronous (urllib3), so it runs in a thread while the loop serves.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from gqlbatch import Settings, create_app

asposewordscloud = pytest.importorskip("asposewordscloud", reason="pip install '.[test]'")

# The SDK's parts carry "Content-Disposition: form-data;" (no name). gqlbatch's multipart
# door ignores aiohttp's warning about it; pytest's own filters ("error") come first in a test.
pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.BadContentDispositionHeader")

DOCUMENT = b"PK\x03\x04" + bytes(range(256)) * 4 + b"\x00\xff" * 9 + b"word"
"""1,039 bytes that are no text in any encoding: a .docx as Aspose's storage answers it."""
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PDF = b"%PDF-1.7\n" + bytes(range(200))


@pytest.fixture
async def words(aiohttp_server: Any) -> tuple[str, list[tuple[str, str | None, bytes]]]:
    """Aspose's API in Aspose's place: the document in storage, and a converter that says
    what it was sent."""
    received: list[tuple[str, str | None, bytes]] = []

    async def download(request: web.Request) -> web.Response:
        received.append((f"GET {request.path_qs}", None, b""))
        return web.Response(body=DOCUMENT, content_type=DOCX)

    async def convert(request: web.Request) -> web.Response:
        body = await request.read()
        received.append((f"PUT {request.path_qs}", request.headers.get("Content-Type"), body))
        if body != DOCUMENT:
            return web.Response(status=400, text="not the document")
        return web.Response(body=PDF, content_type="application/pdf")

    app = web.Application()
    app.router.add_get("/storage/file/{path}", download)
    app.router.add_put("/convert", convert)
    server = await aiohttp_server(app, host="127.0.0.1")
    return str(server.make_url("")).rstrip("/"), received


@pytest.fixture
async def sdk(aiohttp_server: Any, words: Any) -> Any:
    upstream, _ = words
    settings = Settings.from_upstream_urls([upstream], batch_paths=("/v4.0/words/batch",))
    gateway = await aiohttp_server(create_app(settings), host="127.0.0.1")
    api = asposewordscloud.WordsApi("client-id", "client-secret", str(gateway.make_url("")))
    # A token as the SDK keeps one: it asks /connect/token only when it has none.
    api.api_client.configuration.access_token = "token"
    return api


def _download_then_convert() -> tuple[Any, Any]:
    from asposewordscloud.models.requests import (
        BatchRequest,
        ConvertDocumentRequest,
        DownloadFileRequest,
    )

    download = BatchRequest(DownloadFileRequest(path="report.docx"))
    convert = BatchRequest(ConvertDocumentRequest(document=download.use_as_source(), format="pdf"))
    convert.depends_on(download)
    return download, convert


def _read(result: Any) -> bytes:
    """A `file` result as the SDK returns it: its bytes, or a file it wrote them to."""
    if isinstance(result, bytes | bytearray):
        return bytes(result)
    with open(result, "rb") as handle:
        return handle.read()


async def test_download_then_convert_sends_the_documents_bytes(sdk: Any, words: Any) -> None:
    # The SDK's headline case: the converter received 1,388 bytes of base64 text ("UEsDB...")
    # instead of the 1,039 bytes of the document.
    _, received = words
    results = await asyncio.to_thread(sdk.batch, *_download_then_convert())
    assert len(results) == 2
    assert _read(results[1]) == PDF
    convert = next(r for r in received if r[0].startswith("PUT"))
    assert convert == ("PUT /convert?format=pdf", DOCX, DOCUMENT)


async def test_without_intermediate_results_the_answer_is_the_final_one(
    sdk: Any, words: Any
) -> None:
    # batch_with_options(True, ...) sends ?displayIntermediateResults=false, and the SDK's
    # parser refuses any answer but one part ("Response must have one part.").
    results = await asyncio.to_thread(sdk.batch_with_options, True, *_download_then_convert())
    assert len(results) == 1
    assert _read(results[0]) == PDF


async def test_a_binary_answer_is_a_whole_body_or_nothing(aiohttp_client: Any, words: Any) -> None:
    # Its base64 text in a path or a JSON string would reach the upstream as characters it
    # never sent: the item fails with the reason, and nothing of it is sent. What the answer
    # is, binary or not, is known only when it has come, so this is the item's failure, not
    # a refusal before anything runs (docs/decisions.md).
    upstream, received = words
    gateway = await aiohttp_client(create_app(Settings.from_upstream_urls([upstream])))
    batch = [
        {"requestId": "doc", "path": "/storage/file/report.docx"},
        {"requestId": "inPath", "method": "PUT", "path": "/convert?format={resultOf(doc)}"},
        {
            "requestId": "inJson",
            "method": "PUT",
            "path": "/convert",
            "body": {"document": "{resultOf(doc)}"},
        },
        {"requestId": "whole", "method": "PUT", "path": "/convert", "body": "{resultOf(doc)}"},
    ]
    answer = await (await gateway.post("/batch", json={"requests": batch})).json()
    by_id = {r["id"]: r for r in answer["responses"]}
    for rid in ("inPath", "inJson"):
        assert by_id[rid]["state"] == "FAILED"
        assert by_id[rid]["error"]["code"] == "INVALID_REFERENCE"
        assert f"({DOCX})" in by_id[rid]["error"]["message"]
    assert by_id["whole"]["status"] == 200
    assert [r[0] for r in received] == ["GET /storage/file/report.docx", "PUT /convert"]
