"""npm packages that tests run with node: installed once, pinned, into a cache folder with the
machine's npm (the npm registry is one the CI machine reaches). Without node or npm, the test
that asks is skipped, saying so."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))


def npm_packages(name: str, packages: tuple[str, ...], *, why: str) -> Path:
    """The folder holding `node_modules` with *packages*, installed there once.

    *why* completes "node and npm are needed to ..." in the skip reason."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip(f"node and npm are needed to {why}")
    folder = CACHE / name
    stamp = folder / ("installed-" + "-".join(packages).replace("@", "_").replace("/", "_"))
    if not stamp.exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--silent",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(folder),
                *packages,
            ],
            check=True,
            timeout=240,
        )
        stamp.touch()
    return folder
