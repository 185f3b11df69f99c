from __future__ import annotations

import os
import shutil
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import hypothesis
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gqlbatch import Settings, create_app
from gqlbatch.ops.demo import sample_api
from tests.fakes import FakeService
from tests.redis_server import redis_server

GraphQL = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server for the session, on a free loopback port."""
    if shutil.which("redis-server") is None:
        pytest.skip(
            "redis-server is not installed; .ci/run installs it (apt-get install redis-server)"
        )
    with redis_server() as url:
        yield url


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
async def upstream_url(service: FakeService, aiohttp_server: Any) -> str:
    server: TestServer = await aiohttp_server(service.app(), host="127.0.0.1")
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def sample_url(aiohttp_server: Any) -> str:
    server: TestServer = await aiohttp_server(sample_api(), host="127.0.0.1")
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
def make_gateway(aiohttp_client: Any) -> Callable[..., Awaitable[TestClient]]:
    async def make(*urls: str, **options: Any) -> TestClient:
        settings = Settings.from_upstream_urls(list(urls), **options)
        return await aiohttp_client(create_app(settings))

    return make


@pytest.fixture
async def gateway(make_gateway: Any, upstream_url: str) -> TestClient:
    return await make_gateway(upstream_url)


def graphql_caller(client: TestClient) -> GraphQL:
    async def call(
        query: str, variables: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        resp = await client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers or {}
        )
        assert resp.status in (200, 400), await resp.text()
        return await resp.json()

    return call


@pytest.fixture
def graphql(gateway: TestClient) -> GraphQL:
    return graphql_caller(gateway)


# Hypothesis: CI's runs are derandomized (the same examples every time); "thorough" is for a
# developer about to touch the doors (see tests/test_properties.py).
hypothesis.settings.register_profile("ci", max_examples=150, derandomize=True)
hypothesis.settings.register_profile("thorough", max_examples=1500)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
