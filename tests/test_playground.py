"""`/playground` as served: its files, its policy, and its example (the browser that runs it
is in tests/test_browser.py)."""

from __future__ import annotations

from typing import Any

from gqlbatch import Settings, create_app


async def test_the_playground_loads_nothing_from_elsewhere(aiohttp_client: Any) -> None:
    hostile = '[{"path": "/x", "body": "</textarea><script>alert(1)</script>"}]'
    app = create_app(
        Settings.from_upstream_urls(["http://127.0.0.1:1"]), playground_example=hostile
    )
    client = await aiohttp_client(app)
    page = await client.get("/playground")
    html = await page.text()
    assert page.content_type == "text/html"
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert "<script>alert" not in html and "&lt;/textarea&gt;" in html  # escaped, inert
    assert "https://" not in html and "unpkg" not in html
    for path, kind in (
        ("/playground/playground.js", "text/javascript"),
        ("/playground/playground.css", "text/css"),
    ):
        asset = await client.get(path)
        assert (asset.status, asset.content_type) == (200, kind)
        assert "https://" not in await asset.text()
