"""The upstreams' OpenAPI documents, read once at start-up (a file, or a URL), no longer than
`core.openapi.MAX_BYTES` as they are read: a URL that streamed without end once took the
process to 8.1 GiB (issue 24).
"""

from __future__ import annotations

from pathlib import Path

import aiohttp

from gqlbatch.core.config import Settings
from gqlbatch.core.errors import ConfigError
from gqlbatch.core.openapi import MAX_BYTES, Contract

__all__ = ["load_contracts"]

_DOCUMENT_TIMEOUT_S = 30


async def load_contracts(settings: Settings) -> dict[str, Contract]:
    """The OpenAPI documents the upstreams of *settings* name, read and checked, by upstream.

    Raises:
        ConfigError: one line naming the document that cannot be read, and why.
    """
    contracts = {}
    for upstream in settings.upstreams.values():
        if upstream.openapi is not None:
            source = f"upstreams.{upstream.name}.openapi {upstream.openapi}"
            text = await _document_text(upstream.openapi, source)
            contracts[upstream.name] = Contract.from_text(text, source)
    return contracts


async def _document_text(location: str, source: str) -> str:
    """The text of the document at *location*, no longer than openapi.MAX_BYTES.

    Raises:
        ConfigError: it cannot be read, or is longer.
    """
    too_long = ConfigError(f"{source}: longer than {MAX_BYTES} bytes")
    if not location.startswith(("http://", "https://")):
        try:
            with Path(location).open("rb") as file:
                data = file.read(MAX_BYTES + 1)
            if len(data) > MAX_BYTES:
                raise too_long
            return data.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source}: {exc}") from None
    try:
        timeout = aiohttp.ClientTimeout(total=_DOCUMENT_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(location) as resp:
            if resp.status != 200:
                raise ConfigError(f"{source}: answered {resp.status}")
            received = bytearray()
            async for chunk in resp.content.iter_chunked(64 * 1024):
                received += chunk
                if len(received) > MAX_BYTES:  # read as it comes: it may never end
                    raise too_long
            return received.decode(resp.get_encoding())
    except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError, LookupError) as exc:
        raise ConfigError(f"{source}: {type(exc).__name__}: {exc}") from None
