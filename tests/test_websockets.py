"""GraphQL over websockets, with the `gql` client as applications use it, over both protocols:
graphql-transport-ws, and the legacy graphql-ws that is gql's default."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from gql import Client, GraphQLRequest, gql
from gql.transport.aiohttp_websockets import AIOHTTPWebsocketsTransport
from gql.transport.exceptions import TransportQueryError

from gqlbatch import Settings, create_app, running
from tests.fakes import FakeService

PROTOCOLS = ["graphql-ws", "graphql-transport-ws"]
MUTATION = """mutation($r: [SubRequestInput!]!) {
  batch(requests: $r) { items { requestId status body } }
}"""


@pytest.fixture(params=PROTOCOLS)
async def session(
    request: pytest.FixtureRequest, service: FakeService, upstream_url: str
) -> AsyncIterator[Any]:
    settings = Settings.from_upstream_urls([upstream_url], max_items=2)
    async with running(create_app(settings)) as url:
        transport = AIOHTTPWebsocketsTransport(
            url=url.replace("http://", "ws://") + "/graphql", subprotocols=[request.param]
        )
        async with Client(transport=transport) as connected:
            yield connected


async def test_queries_and_mutations_run_over_either_protocol(
    session: Any, service: FakeService
) -> None:
    service.route("GET", "/a", json={"id": 1})
    service.route("POST", "/w", status=201, json={"id": 2})
    read = await session.execute(
        gql('{ batch(requests: [{path: "/a"}]) { items { status body } } }')
    )
    assert read == {"batch": {"items": [{"status": 200, "body": {"id": 1}}]}}
    items = [{"requestId": "w", "method": "POST", "path": "/w"}]
    wrote = await session.execute(GraphQLRequest(MUTATION, variable_values={"r": items}))
    assert wrote == {"batch": {"items": [{"requestId": "w", "status": 201, "body": {"id": 2}}]}}
    assert service.lines == ["GET /a", "POST /w"]


async def test_each_operation_has_the_limits_of_one_request(
    session: Any, service: FakeService
) -> None:
    # max_items is 2. One connection's operations each get a request's budget (a budget for
    # the whole connection refused every operation after the second item)...
    service.route("GET", "/a", json={})
    for _ in range(4):
        out = await session.execute(gql('{ batch(requests: [{path: "/a"}]) { items { status } } }'))
        assert out == {"batch": {"items": [{"status": 200}]}}
    # ...and the aliases of one operation share it, as over HTTP.
    three = "{ " + " ".join(
        f'b{i}: batch(requests: [{{path: "/a"}}]) {{ replayed }}' for i in range(3)
    )
    with pytest.raises(TransportQueryError) as refused:
        await session.execute(gql(three + " }"))
    assert refused.value.errors is not None
    assert refused.value.errors[0]["extensions"]["code"] == "BATCH_TOO_LARGE"
    assert refused.value.data == {"b0": {"replayed": False}, "b1": {"replayed": False}, "b2": None}


async def test_query_limits_hold_over_websockets(session: Any) -> None:
    aliases = "{ " + " ".join(f"a{i}: __typename" for i in range(60)) + " }"
    with pytest.raises(TransportQueryError) as refused:
        await session.execute(gql(aliases))
    assert refused.value.errors is not None
    assert refused.value.errors[0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"


async def test_a_document_refused_while_parsing_is_answered_over_websockets(
    request: pytest.FixtureRequest, session: Any
) -> None:
    # Issue 24, finding 16: a refusal raised while parsing escaped Strawberry's handling of
    # parse errors; over graphql-ws the operation hung, over graphql-transport-ws it ended
    # with no answer and a traceback in the log. Now graphql-ws answers with the error, and
    # graphql-transport-ws closes with 4400 and the reason, as its protocol says to for a
    # document that does not parse.
    from gql.transport.exceptions import TransportConnectionFailed

    tokens = "{ " + " ".join(f"a{i}: __typename" for i in range(3_000)) + " }"
    if request.node.callspec.params["session"] == "graphql-ws":
        with pytest.raises(TransportQueryError) as refused:
            await session.execute(gql(tokens))
        assert refused.value.errors is not None
        assert refused.value.errors[0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    else:
        with pytest.raises(TransportConnectionFailed):
            await session.execute(gql(tokens))


async def test_an_internal_error_is_masked_over_websockets(
    session: Any, service: FakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Operations over a websocket are streamed results (Schema.stream): each is masked as it
    # is sent, as an HTTP answer is once it is complete.
    import gqlbatch.doors.graphql.batches as batches_module

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(batches_module, "run_batch", broken)
    with pytest.raises(TransportQueryError) as failed:
        await session.execute(gql('{ batch(requests: [{path: "/a"}]) { replayed } }'))
    assert failed.value.errors is not None
    (error,) = failed.value.errors
    assert "secret" not in str(error)
    assert error["extensions"]["code"] == "INTERNAL_ERROR"
    assert error["extensions"]["errorId"] in error["message"]


# --------------------------------------------------------------------------------------------
# Issue 24, finding 9: idle websockets, and how many one client may hold


async def _handshake(http: Any, url: Any, headers: dict[str, str]) -> Any:
    ws = await http.ws_connect(url, protocols=("graphql-transport-ws",), headers=headers)
    await ws.send_json({"type": "connection_init"})
    assert (await ws.receive_json())["type"] == "connection_ack"
    return ws


async def test_websockets_per_client_are_bounded_and_others_still_connect(
    make_gateway: Any, upstream_url: str
) -> None:
    import aiohttp

    gateway = await make_gateway(upstream_url, ws_max_per_client=2, ws_max_per_address=3)
    url = gateway.make_url("/graphql")
    alice, bob, carol = ({"Authorization": f"Bearer {who}"} for who in ("alice", "bob", "carol"))
    async with aiohttp.ClientSession() as http:
        held = [await _handshake(http, url, alice) for _ in range(2)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url, protocols=("graphql-transport-ws",), headers=alice)
        assert refused.value.status == 429
        assert refused.value.headers is not None and refused.value.headers["Retry-After"] == "1"
        third = await _handshake(http, url, bob)  # another client is not refused for alice's
        with pytest.raises(aiohttp.WSServerHandshakeError):  # the address has its three
            await http.ws_connect(url, protocols=("graphql-transport-ws",), headers=carol)
        await held[0].close()
        assert (await gateway.get("/healthz")).status == 200  # plain requests never wait
        again = await _handshake(http, url, alice)  # the one closed no longer counts
        for ws in (held[1], third, again):
            await ws.close()


async def test_an_idle_websocket_is_closed(make_gateway: Any, upstream_url: str) -> None:
    import aiohttp

    gateway = await make_gateway(upstream_url, ws_idle_timeout_s=1)
    async with aiohttp.ClientSession() as http:
        ws = await _handshake(http, gateway.make_url("/graphql"), {})
        closing = await ws.receive()  # nothing sent: the server closes it
        assert closing.type is aiohttp.WSMsgType.CLOSE
        assert (closing.data, closing.extra) == (1000, "idle for 1 s (ws_idle_timeout_s)")


def test_a_websocket_with_an_operation_open_is_not_idle() -> None:
    from gqlbatch.doors.graphql.websockets import _SOCKET, Sockets, _Socket

    now = [0.0]
    sockets = Sockets(per_client=4, per_address=4, idle_s=60, clock=lambda: now[0])
    busy, quiet = (_Socket(ws, "c", "a", seen=0.0) for ws in ("busy", "quiet"))
    for socket in (busy, quiet):
        sockets._open.add(socket)
    request: Any = {_SOCKET: busy}
    sockets.heard(request, {"type": "subscribe", "id": "1", "payload": {}})
    now[0] = 61.0
    assert sockets.idle() == ["quiet"]
    sockets.told(request, {"type": "ka"})  # the server's keep-alive is not use
    sockets.told(request, {"type": "complete", "id": "1"})
    now[0] = 122.0
    assert sorted(sockets.idle()) == ["busy", "quiet"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_message_the_strict_reader_refuses_is_invalid_json_to_the_protocol(
    protocol: str, make_gateway: Any, upstream_url: str
) -> None:
    # Issue 24, finding 16: the refusal reached the HTTP middleware, which wrote
    # "HTTP/1.1 400" into the open websocket.
    import aiohttp

    gateway = await make_gateway(upstream_url)
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(gateway.make_url("/graphql"), protocols=(protocol,)) as ws,
    ):
        await ws.send_json({"type": "connection_init"})
        assert (await ws.receive_json())["type"] == "connection_ack"
        await ws.send_str('{"type": "start", "id": "1", "payload": {"n": NaN}}')
        if protocol == "graphql-transport-ws":
            closing = await ws.receive()
            assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 4400)
            assert closing.extra == "WebSocket message must be valid JSON"
        else:  # graphql-ws ignores what it cannot read, and goes on
            await ws.send_json({"type": "start", "id": "2", "payload": {"query": "{ __typename }"}})
            answer = await ws.receive_json()
            while answer["type"] == "ka":  # graphql-ws's keep-alive, every second
                answer = await ws.receive_json()
            assert answer["payload"] == {"data": {"__typename": "Query"}}


async def _told(ws: Any) -> Any:
    """The server's next message but its keep-alives (graphql-ws sends "ka" at once)."""
    while (message := await ws.receive_json())["type"] == "ka":
        pass
    return message


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_websocket_runs_a_bounded_number_of_operations_at_once(
    protocol: str, make_gateway: Any, upstream_url: str, service: FakeService
) -> None:
    import asyncio

    import aiohttp

    gate = asyncio.Event()
    service.route("GET", "/slow", json={"id": 1}, gate=gate)
    gateway = await make_gateway(upstream_url, ws_max_operations=1)
    opens = "subscribe" if protocol == "graphql-transport-ws" else "start"
    query = {"query": '{ batch(requests: [{path: "/slow"}]) { items { status } } }'}
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(gateway.make_url("/graphql"), protocols=(protocol,)) as ws,
    ):
        await ws.send_json({"type": "connection_init"})
        assert (await _told(ws))["type"] == "connection_ack"
        await ws.send_json({"type": opens, "id": "1", "payload": query})
        await service.received(1)  # the first runs, held at the upstream
        await ws.send_json({"type": opens, "id": "2", "payload": query})
        refused = await _told(ws)
        assert (refused["type"], refused["id"]) == ("error", "2")
        payload = refused["payload"]
        error = payload[0] if isinstance(payload, list) else payload
        assert error["extensions"]["code"] == "TOO_MANY_REQUESTS"
        assert "ws_max_operations" in error["message"]
        gate.set()
        answered = await _told(ws)
        assert answered["id"] == "1"
        assert answered["payload"]["data"] == {"batch": {"items": [{"status": 200}]}}
        assert (await _told(ws))["type"] == "complete"
        await ws.send_json({"type": opens, "id": "3", "payload": query})  # its place is free
        assert (await _told(ws))["payload"]["data"]["batch"]["items"] == [{"status": 200}]
    assert service.lines == ["GET /slow", "GET /slow"]
