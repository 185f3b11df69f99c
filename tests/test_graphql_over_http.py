"""graphql-http's server audits, the GraphQL over HTTP spec's own test suite, against a real
gateway: every audit must pass (61 of 61 with graphql-http 1.23.1).

The audits are an npm package, pinned by tests/node/audit's lockfile, which `.ci/run`
installs (tests/npm.py); the test runs them with node. Without node, or without the package,
it is skipped, saying so.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gqlbatch import Settings, create_app, running
from tests.npm import npm_packages

AUDIT = Path(__file__).parent / "audit" / "audit.cjs"


@pytest.fixture(scope="module")
def audit_packages() -> Path:
    return npm_packages("audit", why="run graphql-http's audits") / "node_modules"


@pytest.mark.timeout(240)
async def test_every_graphql_over_http_audit_passes(audit_packages: Path) -> None:
    import asyncio

    settings = Settings.from_upstream_urls(["http://127.0.0.1:9"])
    async with running(create_app(settings)) as url:
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(AUDIT),
            url + "/graphql",
            str(audit_packages),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    lines = out.decode().splitlines()
    assert proc.returncode == 0 and lines, err.decode()
    assert lines == ["61/61"], "\n".join(lines)
