"""Who a request comes from: every forwarded credential, and an address that a client cannot
choose unless a trusted proxy says so."""

from __future__ import annotations

import pytest

from gqlbatch.core.errors import BatchRejected
from gqlbatch.doors.identity import Identifier, Identity

FORWARDED = ("Authorization", "X-Api-Key", "Accept-Language", "X-Request-Id", "traceparent")


def identify(
    headers: list[tuple[str, str]], peer: str = "10.0.0.9", trusted: tuple[str, ...] = ()
) -> Identity:
    return Identifier(FORWARDED, trusted).identify(headers, peer)


def test_every_forwarded_credential_keys_the_client() -> None:
    alice = identify([("X-Api-Key", "alice")])
    bob = identify([("X-Api-Key", "bob")])
    assert alice.client != bob.client and alice.client.startswith("cred:")
    assert "alice" not in alice.client
    both = identify([("X-Api-Key", "alice"), ("Authorization", "Bearer t")])
    assert both.client not in (alice.client, bob.client)


def test_request_describing_headers_are_not_credentials() -> None:
    one = identify([("X-Api-Key", "k"), ("X-Request-Id", "1"), ("traceparent", "00-a")])
    two = identify([("x-api-key", "k"), ("X-Request-Id", "2"), ("Accept-Language", "fr")])
    assert one.client == two.client
    assert identify([("X-Request-Id", "1")]).client == "addr:10.0.0.9"


def test_a_header_not_forwarded_is_not_a_credential() -> None:
    assert identify([("Cookie", "session=1")]).client == "addr:10.0.0.9"


def test_a_repeated_credential_is_refused() -> None:
    with pytest.raises(BatchRejected, match="sent more than once"):
        identify([("Authorization", "Bearer a"), ("authorization", "Bearer b")])


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "trusted", "address"),
    [
        ("10.0.0.9", "1.2.3.4", (), "10.0.0.9"),  # no trusted proxy: the header is ignored
        ("10.0.0.1", "1.2.3.4", ("10.0.0.1",), "1.2.3.4"),
        ("10.0.0.1", "6.6.6.6, 1.2.3.4", ("10.0.0.0/8",), "1.2.3.4"),  # spoofed left part
        ("10.0.0.1", "1.2.3.4, 10.0.0.2", ("10.0.0.0/8",), "1.2.3.4"),  # two proxies
        ("10.0.0.1", "10.0.0.3, 10.0.0.2", ("10.0.0.0/8",), "10.0.0.3"),  # all trusted
        ("10.0.0.1", "", ("10.0.0.0/8",), "10.0.0.1"),
        ("10.0.0.1", "garbage", ("10.0.0.0/8",), "garbage"),
    ],
)
def test_forwarded_for_is_believed_only_from_trusted_proxies(
    peer: str, forwarded_for: str, trusted: tuple[str, ...], address: str
) -> None:
    headers = [("X-Forwarded-For", forwarded_for)] if forwarded_for else []
    assert identify(headers, peer, trusted).address == f"addr:{address}"
