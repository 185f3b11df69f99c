"""A streamed batch: each item's result arrives the moment it is final, over a websocket
subscription (gql). The slow item does not hold back the fast ones.

    .venv/bin/pip install ".[examples]"   # gql and requests, from the checkout's root
    python examples/stream.py [http://127.0.0.1:8000/graphql]
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

STREAM = GraphQLRequest("""
subscription Stream {
  batch(requests: [
    {requestId: "user", path: "/users/1"}
    {requestId: "posts", path: "/posts", query: {userId: "{resultOf(user).id}"}}
    {requestId: "comments", path: "/comments", query: {postId: "{resultOf(posts)[0].id}"}}
  ]) {
    ... on ItemResult { requestId status durationMs }
    ... on BatchDone { stats { subRequests upstreamCalls wallMs } }
  }
}
""")


async def main() -> int:
    transport = AIOHTTPWebsocketsTransport(url=URL.replace("http", "ws", 1))
    async with Client(transport=transport) as session:
        async for event in session.subscribe(STREAM):
            batch = event["batch"]
            if "requestId" in batch:
                print(f"item {batch['requestId']}: {batch['status']}")
            else:
                print(f"done: {batch['stats']['subRequests']} sub-requests")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
