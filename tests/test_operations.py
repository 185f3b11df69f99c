"""Operations: `/metrics` (Prometheus, one process and several workers) and `/readyz`."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
from typing import Any

import aiohttp
import pytest

from gqlbatch import Settings, create_app
from gqlbatch.core.upstream_settings import UpstreamSettings
from gqlbatch.doors.readiness import drain
from tests.fakes import FakeService
from tests.processes import SERVING, gqlbatch_server


def samples(text: str) -> dict[str, float]:
    """`name{labels} value` lines of a Prometheus text exposition, by `name{labels}`."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def delta(before: dict[str, float], after: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_metrics_count_batches_items_calls_and_refusals(
    gateway: Any, service: FakeService
) -> None:
    service.route("GET", "/ok", json={})
    service.route("GET", "/bad", status=500, json={})
    before = samples(await (await gateway.get("/metrics")).text())
    resp = await gateway.post("/batch", json=[{"path": "/ok"}, {"path": "/ok"}, {"path": "/bad"}])
    assert resp.status == 200
    refused = await gateway.post("/batch", json=[{"path": "//evil"}])
    assert refused.status == 400
    metrics = await gateway.get("/metrics")
    assert metrics.content_type == "text/plain"
    after = samples(await metrics.text())
    assert delta(before, after, 'gqlbatch_batches_total{outcome="ran"}') == 1
    assert delta(before, after, 'gqlbatch_batches_total{outcome="refused"}') == 1
    assert delta(before, after, 'gqlbatch_refusals_total{code="FORBIDDEN_TARGET"}') == 1
    assert delta(before, after, 'gqlbatch_items_total{state="SUCCEEDED"}') == 2
    assert delta(before, after, 'gqlbatch_items_total{state="FAILED"}') == 1
    assert delta(before, after, 'gqlbatch_calls_saved_total{by="dedupe"}') == 1
    calls = 'gqlbatch_upstream_calls_total{status="%s",upstream="default"}'
    assert delta(before, after, calls % "200") == 1
    assert delta(before, after, calls % "500") >= 1  # retried as the policy allows
    assert delta(before, after, "gqlbatch_batch_seconds_count") == 2
    assert after["gqlbatch_upstream_in_flight"] == 0  # every call has ended


@pytest.mark.timeout(60)
async def test_metrics_add_up_every_worker(service: FakeService, upstream_url: str) -> None:
    service.route("GET", "/ok", json={})
    args = ("serve", "--upstream", upstream_url, "--workers", "2")
    async with gqlbatch_server(*args, printing=SERVING) as (url, _):
        for _ in range(10):  # on new connections, so that both workers take some
            async with (
                aiohttp.ClientSession() as fresh,
                fresh.post(url + "/batch", json=[{"path": "/ok"}]) as resp,
            ):
                assert resp.status == 200
        # Whichever worker answers, it reports both workers' counts.
        for _ in range(4):
            async with aiohttp.ClientSession() as fresh, fresh.get(url + "/metrics") as resp:
                found = samples(await resp.text())
            assert found['gqlbatch_batches_total{outcome="ran"}'] == 10
            calls = 'gqlbatch_upstream_calls_total{status="200",upstream="default"}'
            assert found[calls] == 10
            assert found['gqlbatch_upstream_seconds_count{upstream="default"}'] == 10
            assert found['gqlbatch_items_total{state="SUCCEEDED"}'] == 10
            assert found["gqlbatch_batch_seconds_count"] == 10
        # Refusals and their statuses, as the clients saw them, whichever worker sent them.
        for _ in range(6):
            async with (
                aiohttp.ClientSession() as fresh,
                fresh.post(url + "/batch", json=[{"path": "//evil"}]) as resp,
            ):
                assert resp.status == 400
        async with aiohttp.ClientSession() as fresh, fresh.get(url + "/metrics") as resp:
            found = samples(await resp.text())
        assert found['gqlbatch_refusals_total{code="FORBIDDEN_TARGET"}'] == 6
        assert found['gqlbatch_http_responses_total{status="400"}'] == 6
        assert found['gqlbatch_http_responses_total{status="200"}'] >= 10


async def test_metrics_count_every_refusal_a_client_sees(
    make_gateway: Any, upstream_url: str, service: FakeService
) -> None:
    # Issue 25: under load /metrics counted 1,237 of the 5,408 refusals the clients saw: a
    # client at its limit is refused before its body is read, and that was not counted.
    gate = asyncio.Event()
    service.route("GET", "/slow", json={}, gate=gate)
    gateway = await make_gateway(upstream_url, max_outstanding_per_client=1)
    before = samples(await (await gateway.get("/metrics")).text())
    held = asyncio.create_task(gateway.post("/batch", json=[{"path": "/slow"}]))
    await service.received(1)
    for _ in range(3):
        assert (await gateway.post("/batch", json=[{"path": "/slow"}])).status == 429
    query = '{ batch(requests: [{requestId: "s", path: "/slow"}]) { items { status } } }'
    assert (await gateway.post("/graphql", json={"query": query})).status == 429
    gate.set()
    assert (await held).status == 200
    after = samples(await (await gateway.get("/metrics")).text())
    assert delta(before, after, 'gqlbatch_refusals_total{code="TOO_MANY_REQUESTS"}') == 4
    assert delta(before, after, 'gqlbatch_http_responses_total{status="429"}') == 4
    assert delta(before, after, 'gqlbatch_http_responses_total{status="200"}') == 2


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_readyz_reports_each_upstream_the_store_and_draining(
    aiohttp_client: Any, service: FakeService, upstream_url: str, redis_url: str
) -> None:
    service.route("GET", "/health", json={})
    service.route("GET", "/sick", status=503, json={})
    upstreams = {
        "good": UpstreamSettings(name="good", base_url=upstream_url, probe_path="/health"),
        "sick": UpstreamSettings(name="sick", base_url=upstream_url, probe_path="/sick"),
        "quiet": UpstreamSettings(name="quiet", base_url=upstream_url),
    }
    client = await aiohttp_client(create_app(Settings(upstreams=upstreams, store_url=redis_url)))
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 503
    assert body["store"] == "ok"
    assert body["upstreams"]["good"] == "ok"
    assert body["upstreams"]["quiet"] == "not probed"
    assert body["upstreams"]["sick"] == "failing: answered 503"

    del upstreams["sick"]
    healthy = await aiohttp_client(create_app(Settings(upstreams=upstreams, store_url=redis_url)))
    assert (await healthy.get("/readyz")).status == 200
    await drain(healthy.server.app)  # what SIGTERM starts: the server is draining
    drained = await healthy.get("/readyz")
    assert (drained.status, (await drained.json())["draining"]) == (503, True)

    gone = f"redis://127.0.0.1:{_closed_port()}/0"
    lost = await aiohttp_client(create_app(Settings(upstreams=upstreams, store_url=gone)))
    resp = await lost.get("/readyz")
    assert resp.status == 503
    assert re.fullmatch(r"failing: \w*ConnectionError", (await resp.json())["store"])


async def test_the_in_flight_gauge_counts_calls_out_now(gateway: Any, service: FakeService) -> None:
    gate = asyncio.Event()
    service.route("GET", "/held", json={}, gate=gate)
    batch = asyncio.create_task(gateway.post("/batch", json=[{"path": "/held"}]))
    await service.received()
    during = samples(await (await gateway.get("/metrics")).text())
    assert during["gqlbatch_upstream_in_flight"] == 1
    gate.set()
    assert (await batch).status == 200
    after = samples(await (await gateway.get("/metrics")).text())
    assert after["gqlbatch_upstream_in_flight"] == 0


async def test_readyz_probes_once_for_many_and_tells_no_details(
    aiohttp_client: Any, service: FakeService, upstream_url: str, caplog: Any
) -> None:
    # Issue 24, finding 17: every anonymous GET of /readyz probed every upstream, and the
    # answer quoted each failure in its own words.
    service.route("GET", "/health", status=503, json={"internal": "db-7.corp:5432 is down"})
    upstream = UpstreamSettings(name="api", base_url=upstream_url, probe_path="/health")
    client = await aiohttp_client(create_app(Settings(upstreams={"api": upstream})))
    answers = await asyncio.gather(*(client.get("/readyz") for _ in range(20)))
    assert {a.status for a in answers} == {503}
    again = await client.get("/readyz")  # within the second: the same findings
    assert (await again.json())["upstreams"]["api"] == "failing: answered 503"
    assert service.lines == ["GET /health"]  # one probe for all of them
    assert "failing: answered 503 to GET /health" in caplog.text  # the log has the details


async def test_an_upstreams_unusual_status_is_counted_by_its_class(
    gateway: Any, service: FakeService
) -> None:
    # Issue 24, finding 17: each status an upstream chose (100 to 999) was a series of its own.
    for status in (299, 599, 999):
        service.route("GET", f"/s{status}", status=status, text="odd")
    await gateway.post("/batch", json=[{"path": f"/s{s}"} for s in (299, 599, 999)])
    text = await (await gateway.get("/metrics")).text()
    labels = set(re.findall(r'gqlbatch_upstream_calls_total\{status="([^"]+)"', text))
    labels |= set(re.findall(r'gqlbatch_upstream_calls_total\{[^}]*status="([^"]+)"', text))
    assert {"2xx", "5xx", "9xx"} <= labels
    assert not {"299", "599", "999"} & labels


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [(), ("--workers", "2")], ids=["one", "workers"])
async def test_a_drain_is_visible_and_resets_nothing(
    workers: tuple[str, ...], service: FakeService, upstream_url: str, redis_url: str
) -> None:
    # Issue 25: during a SIGTERM drain /readyz never answered 503, and the next request on
    # each kept-alive connection was reset. From SIGTERM, a process still listens while its
    # batches finish: /readyz is 503, every answer says Connection: close, and a request sent
    # on a connection that was idle is answered. (Under --workers, a worker with nothing in
    # flight stops at once; the one with the batch drains.)
    gate = asyncio.Event()
    service.route("GET", "/slow", json={"slow": True}, gate=gate)
    service.route("GET", "/a", json={"a": True})
    env = {"GQLBATCH_STORE__URL": redis_url}
    args = ("serve", "--upstream", upstream_url, *workers)
    async with (
        gqlbatch_server(*args, printing=SERVING, env=env) as (url, server),
        aiohttp.ClientSession() as http,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as kept,
    ):
        async with kept.get(url + "/healthz") as idle:  # its connection is kept, idle
            assert idle.status == 200
        in_flight = asyncio.create_task(http.post(url + "/batch", json=[{"path": "/slow"}]))
        await service.received(1)
        server.send_signal(signal.SIGTERM)
        for _ in range(200):  # bounded: until the signal has reached the draining process
            async with http.get(url + "/readyz") as ready:
                if ready.status == 503:
                    assert (await ready.json())["draining"] is True
                    break
            await asyncio.sleep(0.05)
        assert ready.status == 503
        if not workers:  # the one process: the idle connection is still its own
            async with kept.post(url + "/batch", json=[{"path": "/a"}]) as reused:
                assert reused.status == 200
                assert reused.headers["Connection"] == "close"
        gate.set()
        async with await in_flight as answer:
            assert answer.status == 200
            assert (await answer.json())[0]["body"] == {"slow": True}
            assert answer.headers["Connection"] == "close"
        assert await asyncio.wait_for(server.wait(), 30) == 0
