"""GraphiQL's page, served from this server's own files when an operator downloaded them
(`gqlbatch graphiql --download DIR`, in `ops.graphiql_assets`; `[graphiql] assets_dir`), or
saying plainly that it needs internet when it loads from unpkg.com.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from gqlbatch.core.errors import ConfigError

__all__ = ["UNPKG", "Asset", "add_graphiql_assets", "assets_of", "local_page", "offline_notice"]

UNPKG = "https://unpkg.com/"
_ASSET = re.compile(
    r'(?:src|href)="https://unpkg\.com/(?P<package>(?:@[\w.-]+/)?[\w.-]+)@(?P<version>[\w.-]+)/'
    r'(?P<path>[^"]+)"\s+integrity="sha384-(?P<digest>[A-Za-z0-9+/=]+)"'
)


@dataclass(frozen=True, slots=True)
class Asset:
    """One file the page loads: where it lives under the assets folder, and its hash."""

    package: str
    version: str
    path: str
    sha384: str

    @property
    def local_path(self) -> str:
        return f"{self.package}@{self.version}/{self.path}"


def assets_of(page: str) -> list[Asset]:
    """The files *page* loads from unpkg.com, with the integrity hash each must have."""
    return [
        Asset(m["package"], m["version"], m["path"], m["digest"]) for m in _ASSET.finditer(page)
    ]


def local_page(page: str) -> str:
    """*page* loading its files from the gateway (`/graphiql-assets/`) instead of unpkg.com;
    the integrity attributes stay, so the browser still checks each file."""
    return page.replace(UNPKG, "/graphiql-assets/")


def offline_notice(page: str) -> str:
    """*page* saying, until GraphiQL replaces it, that it needs internet, and where to go."""
    notice = (
        "Loading GraphiQL from unpkg.com, which needs internet access. Without it, "
        '<a href="/playground">the playground</a> runs batches, or an operator can serve '
        "GraphiQL from this server: <code>gqlbatch graphiql --download DIR</code>, then "
        "<code>[graphiql] assets_dir = DIR</code>."
    )
    return page.replace(
        '<div id="graphiql" class="graphiql-container">Loading...</div>',
        f'<div id="graphiql" class="graphiql-container"><p style="margin:2rem">{notice}</p></div>',
    )


def add_graphiql_assets(app: web.Application, folder: str) -> None:
    """Serve the downloaded files under `/graphiql-assets/`.

    Raises:
        ConfigError: *folder* is not a folder.
    """
    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(
            f"graphiql.assets_dir {folder!r} is not a folder; make it with "
            "`gqlbatch graphiql --download DIR`"
        )
    app.router.add_static("/graphiql-assets/", path, follow_symlinks=False)
