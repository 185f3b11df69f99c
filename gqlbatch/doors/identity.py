"""Who a request comes from: a digest of every credential it forwards, and its address.

Pure. Both identities key the outstanding-call limits (a client cannot dodge its limit by
sending a fresh token each time: its address is counted too), and the credentials key the
idempotency records (one user never gets another's stored answer). A credential is any
forwarded header except those known to describe the request rather than its sender.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gqlbatch.core.errors import BatchRejected, ErrorCode, Problem

__all__ = ["NOT_CREDENTIALS", "Identifier", "Identity", "has_credentials"]

NOT_CREDENTIALS = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "baggage",
        "traceparent",
        "tracestate",
        "user-agent",
        "x-correlation-id",
        "x-request-id",
    }
)
"""Forwarded headers that say nothing about who is asking; every other one is a credential."""

_CREDENTIALS = "cred:"
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Identity:
    """`client` is `cred:<digest>` when credentials were sent, else the address key;
    `address` is `addr:<ip>`."""

    client: str
    address: str


def has_credentials(client: str) -> bool:
    """Whether an identity's *client* was made from credentials (not from an address)."""
    return client.startswith(_CREDENTIALS)


class Identifier:
    """Works out identities for one server's settings."""

    def __init__(self, forwarded: Iterable[str], trusted_proxies: Sequence[str]) -> None:
        self._credentials = frozenset(n.lower() for n in forwarded) - NOT_CREDENTIALS
        self._trusted = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies)

    def identify(self, headers: Iterable[tuple[str, str]], peer: str | None) -> Identity:
        """The identity of a request with these *headers* from *peer*.

        Raises:
            BatchRejected: INVALID_INPUT when a credential header is sent twice; only one of
                the two could identify the client, and the upstream might read the other.
        """
        sent: dict[str, str] = {}
        forwarded_for: list[str] = []
        for name, value in headers:
            lowered = name.lower()
            if lowered == "x-forwarded-for":
                forwarded_for.append(value)
            if lowered not in self._credentials:
                continue
            if lowered in sent:
                raise BatchRejected(
                    [
                        Problem(
                            ErrorCode.INVALID_INPUT,
                            f"the {name} header is sent more than once; send it once",
                            field=name,
                        )
                    ]
                )
            sent[lowered] = value
        address = "addr:" + self._address(peer, forwarded_for)
        if not sent:
            return Identity(address, address)
        canonical = "\0".join(f"{n}\0{v}" for n, v in sorted(sent.items()))
        return Identity(_CREDENTIALS + hashlib.sha256(canonical.encode()).hexdigest()[:24], address)

    def _address(self, peer: str | None, forwarded_for: list[str]) -> str:
        # X-Forwarded-For is believed only as far as trusted proxies wrote it: from the right,
        # the first hop that is not a trusted proxy is the client.
        if peer is None:
            return "unknown"
        if not forwarded_for or not self._is_trusted(peer):
            return peer
        hops = [hop.strip() for hop in ",".join(forwarded_for).split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop
        return hops[0] if hops else peer

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)
