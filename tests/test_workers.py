"""`gqlbatch serve --workers N`: gunicorn's master and N aiohttp workers, as a real process tree,
sharing one Redis store."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from tests.fakes import FakeService
from tests.processes import SERVING, gqlbatch_server


def children(pid: int) -> list[int]:
    """The child processes of *pid*, from /proc."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads children from /proc")
@pytest.mark.timeout(60)
async def test_two_workers_serve_and_share_one_store(
    redis_url: str, service: FakeService, upstream_url: str
) -> None:
    service.route("GET", "/a", json={"ok": True})
    service.route("POST", "/orders", status=201, json={"id": 1})
    env = {"GQLBATCH_STORE__URL": redis_url}
    args = ("serve", "--upstream", upstream_url, "--workers", "2")
    async with (
        gqlbatch_server(*args, printing=SERVING, env=env) as (url, master),
        aiohttp.ClientSession() as http,
    ):
        answers = await asyncio.gather(
            *(http.post(url + "/batch", json=[{"path": "/a"}]) for _ in range(20))
        )
        assert [r.status for r in answers] == [200] * 20
        for answer in answers:
            answer.release()
        assert len(children(master.pid)) == 2
        # Whichever worker takes each copy, the key's batch runs once.
        key = {"Idempotency-Key": "w-1"}
        order = [{"method": "POST", "path": "/orders"}]
        for _ in range(4):
            async with http.post(url + "/batch", json=order, headers=key) as resp:
                assert resp.status == 200
        assert [line for line in service.lines if line.startswith("POST")] == ["POST /orders"]
        master.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(master.wait(), 30) == 0
