"""Apollo's automatic persisted queries and trusted documents (DESIGN §10a), with the bytes
Apollo Client's persisted-query link sends: the hash alone first, then the hash with its
document on a miss; `useGETForHashedQueries` puts the hash in a GET's `extensions`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from gqlbatch import Settings, create_app
from gqlbatch.core.errors import ConfigError
from gqlbatch.doors.graphql.persisted import MemoryPersistedQueries
from tests.fakes import FakeService

SCREEN = 'query Screen { batch(requests: [{path: "/users/1"}]) { items { status body } } }'
SCREEN_HASH = hashlib.sha256(SCREEN.encode()).hexdigest()
APOLLO = {
    "Content-Type": "application/json",
    "Accept": "application/graphql-response+json,application/json;q=0.9",
}


def hashed(sha256: str = SCREEN_HASH, query: str | None = None) -> str:
    """The body Apollo's link posts: `query` only when it is registering."""
    body: dict[str, Any] = {
        "operationName": "Screen",
        "variables": {},
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256}},
    }
    if query is not None:
        body["query"] = query
    return json.dumps(body)


def get_params(sha256: str = SCREEN_HASH) -> dict[str, str]:
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": sha256}}
    return {"operationName": "Screen", "variables": "{}", "extensions": json.dumps(extensions)}


def error_of(answer: dict[str, Any]) -> tuple[str, str]:
    error = answer["errors"][0]
    return error["extensions"]["code"], error["message"]


@pytest.fixture
def users(service: FakeService) -> FakeService:
    service.route("GET", "/users/1", json={"id": 1, "name": "Ada"})
    return service


async def test_a_miss_then_register_then_hits_over_post_and_get(
    gateway: Any, users: FakeService
) -> None:
    miss = await gateway.post("/graphql", data=hashed(), headers=APOLLO)
    # What Apollo's link reads, by message or by code, to send the document next.
    assert error_of(await miss.json()) == ("PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound")
    assert "data" not in await miss.json()
    assert users.lines == []

    registered = await gateway.post("/graphql", data=hashed(query=SCREEN), headers=APOLLO)
    assert (await registered.json())["data"]["batch"]["items"][0]["status"] == 200

    hit = await gateway.post("/graphql", data=hashed(), headers=APOLLO)
    assert (await hit.json())["data"]["batch"]["items"][0]["body"]["name"] == "Ada"
    by_get = await gateway.get(
        "/graphql", params=get_params(), headers={"Accept": APOLLO["Accept"]}
    )
    assert by_get.status == 200
    assert (await by_get.json())["data"]["batch"]["items"][0]["body"]["name"] == "Ada"
    assert users.lines == ["GET /users/1"] * 3


async def test_a_hash_that_is_not_the_documents_registers_nothing(
    gateway: Any, users: FakeService
) -> None:
    wrong = hashlib.sha256(b"something else").hexdigest()
    resp = await gateway.post("/graphql", data=hashed(wrong, query=SCREEN), headers=APOLLO)
    assert resp.status == 400
    assert error_of(await resp.json())[0] == "INVALID_INPUT"
    again = await gateway.post("/graphql", data=hashed(wrong), headers=APOLLO)
    assert error_of(await again.json())[0] == "PERSISTED_QUERY_NOT_FOUND"
    malformed = json.dumps({"extensions": {"persistedQuery": {"version": 2, "sha256Hash": "x"}}})
    refused = await gateway.post("/graphql", data=malformed, headers=APOLLO)
    assert "sha256Hash" in error_of(await refused.json())[1]
    assert users.lines == []


async def test_switched_off_a_hash_is_not_supported(
    make_gateway: Any, upstream_url: str, users: FakeService
) -> None:
    gateway = await make_gateway(upstream_url, persisted_queries=False)
    resp = await gateway.post("/graphql", data=hashed(query=SCREEN), headers=APOLLO)
    assert error_of(await resp.json()) == (
        "PERSISTED_QUERY_NOT_SUPPORTED",
        "PersistedQueryNotSupported",
    )
    plain = await gateway.post("/graphql", json={"query": SCREEN})
    assert (await plain.json())["data"]["batch"]["items"][0]["status"] == 200


def manifest(*documents: str) -> str:
    operations = [
        {"id": hashlib.sha256(d.encode()).hexdigest(), "name": "Op", "type": "query", "body": d}
        for d in documents
    ]
    return json.dumps(
        {"format": "apollo-persisted-query-manifest", "version": 1, "operations": operations}
    )


async def test_trusted_documents_run_and_nothing_else(
    make_gateway: Any, upstream_url: str, users: FakeService, tmp_path: Path
) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(manifest(SCREEN))
    gateway = await make_gateway(upstream_url, trusted_documents=str(path))
    by_hash = await gateway.post("/graphql", data=hashed(), headers=APOLLO)
    in_full = await gateway.post("/graphql", json={"query": SCREEN})
    for resp in (by_hash, in_full):
        assert (await resp.json())["data"]["batch"]["items"][0]["status"] == 200
    other = 'query Other { batch(requests: [{path: "/users/2"}]) { items { status } } }'
    refused = await gateway.post("/graphql", json={"query": other})
    registering = await gateway.post(
        "/graphql", data=hashed(hashlib.sha256(other.encode()).hexdigest(), other), headers=APOLLO
    )
    for resp in (refused, registering):
        assert error_of(await resp.json())[0] == "PERSISTED_QUERY_NOT_IN_LIST"
    assert users.lines == ["GET /users/1"] * 2


def test_a_bad_manifest_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    for text, why in (
        ("[]", "not an Apollo persisted-query manifest"),
        ('{"operations": [{"id": "' + "0" * 64 + '", "body": "{ a }"}]}', "not the SHA-256"),
    ):
        path.write_text(text)
        with pytest.raises(ConfigError, match=why):
            create_app(
                Settings.from_upstream_urls(["http://127.0.0.1:1"], trusted_documents=str(path))
            )
    with pytest.raises(ConfigError, match="trusted_documents"):
        create_app(
            Settings.from_upstream_urls(
                ["http://127.0.0.1:1"], trusted_documents=str(tmp_path / "missing.json")
            )
        )


async def test_memory_keeps_the_most_recently_used_within_its_bytes() -> None:
    store = MemoryPersistedQueries(max_bytes=10, max_bytes_per_client=10)
    await store.put("a", "aaaa", "c1")
    await store.put("b", "bbbb", "c2")
    assert await store.get("a") == "aaaa"  # now the most recently used
    await store.put("c", "cccc", "c3")  # 12 bytes: "b" goes
    assert (await store.get("a"), await store.get("b"), await store.get("c")) == (
        "aaaa",
        None,
        "cccc",
    )
    assert not await store.put("big", "x" * 11, "c4")  # larger than the whole store
    assert await store.get("big") is None


@pytest.fixture(params=["memory", "redis"])
async def document_store(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        yield MemoryPersistedQueries(max_bytes=100, max_bytes_per_client=10)
        return
    from gqlbatch.execution.redis_store import RedisPersistedQueries, connect

    redis = connect(request.getfixturevalue("redis_url"))
    await redis.flushdb()
    yield RedisPersistedQueries(redis, ttl_s=60, max_bytes=100, max_bytes_per_client=10)
    await redis.aclose()


async def test_each_client_registers_within_its_own_bytes(document_store: Any) -> None:
    # Issue 24, finding 13: 1,500 registrations kept 94 MiB for 7 days.
    assert await document_store.put("a", "aaaaaa", "mallory")
    assert not await document_store.put("b", "bbbbbb", "mallory")  # 12 of her 10 bytes
    assert await document_store.get("b") is None
    assert await document_store.put("c", "cccccc", "alice")  # alice has her own
    assert await document_store.put("a", "aaaaaa", "alice")  # kept already: nothing to add
    assert await document_store.get("c") == "cccccc"


async def test_a_document_is_registered_only_once_it_has_validated(
    gateway: Any, users: FakeService
) -> None:
    invalid = 'query Screen { batch(requests: [{path: "/users/1"}]) { nope } }'
    sha = hashlib.sha256(invalid.encode()).hexdigest()
    refused = await gateway.post("/graphql", data=hashed(sha, query=invalid), headers=APOLLO)
    assert refused.status == 400  # it does not validate...
    again = await gateway.post("/graphql", data=hashed(sha), headers=APOLLO)
    assert error_of(await again.json())[0] == "PERSISTED_QUERY_NOT_FOUND"  # ...so not kept
    assert users.lines == []


async def test_past_its_bytes_a_clients_documents_run_unkept(
    make_gateway: Any, upstream_url: str, users: FakeService
) -> None:
    gateway = await make_gateway(upstream_url, persisted_queries_max_bytes_per_client=50)
    sent = await gateway.post("/graphql", data=hashed(query=SCREEN), headers=APOLLO)
    assert (await sent.json())["data"]["batch"]["items"][0]["status"] == 200  # it runs
    again = await gateway.post("/graphql", data=hashed(), headers=APOLLO)
    assert error_of(await again.json())[0] == "PERSISTED_QUERY_NOT_FOUND"  # over 50: unkept
    small = "query Screen { __typename }"
    sha = hashlib.sha256(small.encode()).hexdigest()
    alice = {**APOLLO, "Authorization": "Bearer alice"}
    await gateway.post("/graphql", data=hashed(sha, query=small), headers=alice)
    kept = await gateway.post("/graphql", data=hashed(sha), headers=alice)
    assert (await kept.json())["data"] == {"__typename": "Query"}
