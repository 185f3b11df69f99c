"""Batches over one websocket, the way a long-lived app talks to the gateway: `gql` over the
legacy graphql-ws protocol (its default) or graphql-transport-ws, on the same /graphql URL.

    .venv/bin/pip install ".[examples]"   # gql and requests, from the checkout's root
    python examples/websocket.py [http://127.0.0.1:8000/graphql] [graphql-transport-ws]
"""

import asyncio
import os
import sys

from gql import Client, GraphQLRequest
from gql.transport.aiohttp_websockets import AIOHTTPWebsocketsTransport

URL = (
    sys.argv[1]
    if len(sys.argv) > 1
    else os.environ.get("GQLBATCH_URL", "http://127.0.0.1:8000/graphql")
)
PROTOCOL = sys.argv[2] if len(sys.argv) > 2 else "graphql-ws"

USER = GraphQLRequest("""
query User($path: String!) {
  batch(requests: [{requestId: "user", path: $path}]) {
    items { status body(select: ["id", "name"]) }
  }
}
""")


async def main() -> int:
    transport = AIOHTTPWebsocketsTransport(
        url=URL.replace("http", "ws", 1), subprotocols=[PROTOCOL]
    )
    async with Client(transport=transport) as session:
        # One connection, many operations: each is one batch, with a request's limits.
        for user_id in (1, 2, 3):
            USER.variable_values = {"path": f"/users/{user_id}"}
            result = await session.execute(USER)
            (item,) = result["batch"]["items"]
            print(f"{PROTOCOL}: {item['status']} {item['body']}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
