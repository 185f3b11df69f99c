"""GraphiQL without a CDN: `gqlbatch graphiql --download DIR` fetches, once, the files that
Strawberry's GraphiQL page loads from unpkg.com, from the npm registry, and checks each against
the integrity hash the page already carries. `[graphiql] assets_dir = DIR` then serves them,
and the page loads them from the gateway.

The page names each file as `https://unpkg.com/<package>@<version>/<path>` with an
`integrity="sha384-…"` attribute. The npm registry serves the package's tarball at
`<registry>/<package>/-/<name>-<version>.tgz`, whose `package/<path>` is that file. A file
whose hash differs is refused, and nothing of it is written.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from pathlib import Path

import aiohttp

from gqlbatch.core.errors import ConfigError
from gqlbatch.doors.graphql.graphiql import Asset, assets_of

__all__ = ["NPM_REGISTRY", "download"]

NPM_REGISTRY = "https://registry.npmjs.org"
_MAX_TARBALL = 64 * 1024 * 1024


async def download(page: str, folder: Path, registry: str = NPM_REGISTRY) -> list[Path]:
    """Fetch every file *page* loads into *folder*, each checked against its hash.

    Raises:
        ConfigError: a package cannot be fetched, lacks the file, or the file's hash differs.
    """
    assets = assets_of(page)
    if not assets:
        raise ConfigError("the GraphiQL page names no unpkg.com files to download")
    written = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
        tarballs: dict[tuple[str, str], bytes] = {}
        for asset in assets:
            key = (asset.package, asset.version)
            if key not in tarballs:
                tarballs[key] = await _tarball(http, registry, *key)
            content = _member(tarballs[key], asset)
            target = folder / asset.local_path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            written.append(target)
    return written


async def _tarball(http: aiohttp.ClientSession, registry: str, package: str, version: str) -> bytes:
    name = package.rsplit("/", 1)[-1]
    url = f"{registry.rstrip('/')}/{package}/-/{name}-{version}.tgz"
    try:
        async with http.get(url) as resp:
            if resp.status != 200:
                raise ConfigError(f"{url} answered {resp.status}")
            chunks, size = [], 0
            async for chunk in resp.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > _MAX_TARBALL:
                    raise ConfigError(f"{url} is over {_MAX_TARBALL} bytes")
                chunks.append(chunk)
    except aiohttp.ClientError as exc:
        raise ConfigError(f"{url}: {exc}") from None
    return b"".join(chunks)


def _member(tarball: bytes, asset: Asset) -> bytes:
    where = f"{asset.package}@{asset.version}"
    try:
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
            member = archive.extractfile(f"package/{asset.path}")
            content = member.read() if member is not None else None
    except (tarfile.TarError, KeyError, OSError, EOFError) as exc:
        raise ConfigError(f"{where}: no file {asset.path} in its tarball ({exc})") from None
    if content is None:
        raise ConfigError(f"{where}: {asset.path} is not a file in its tarball")
    digest = base64.b64encode(hashlib.sha384(content).digest()).decode()
    if digest != asset.sha384:
        raise ConfigError(
            f"{where}/{asset.path}: its sha384 is {digest}, not the {asset.sha384} the GraphiQL "
            "page expects; nothing was written for it"
        )
    return content
