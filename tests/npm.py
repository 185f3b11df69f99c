"""npm packages that tests run with node, pinned by a lockfile in the repository:
`tests/node/<name>/package-lock.json`. `.ci/run` installs each with `npm ci`; a test never
installs anything. Without node, or without the packages installed, the test that asks is
skipped, saying why and how to install them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

NODE = Path(__file__).parent / "node"


def npm_packages(name: str, *, why: str) -> Path:
    """The folder `tests/node/<name>`, whose `node_modules` holds its locked packages.

    *why* completes "node and npm are needed to ..." in the skip reason."""
    if shutil.which("node") is None:
        pytest.skip(f"node is needed to {why}")
    folder = NODE / name
    wanted = json.loads((folder / "package.json").read_text(encoding="utf-8"))["dependencies"]
    for package, version in wanted.items():
        installed = folder / "node_modules" / package / "package.json"
        if not installed.exists() or json.loads(installed.read_text())["version"] != version:
            pytest.skip(
                f"the npm packages to {why} are not installed: npm ci --prefix tests/node/{name} "
                "(.ci/run does)"
            )
    return folder
