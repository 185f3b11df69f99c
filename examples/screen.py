"""A frontend screen in one request: a user, their posts, the first post's comments.

Runs against `gqlbatch demo` (or any gqlbatch in front of the demo's sample API) with the `gql`
client. The query text is constant and the data travels in variables, so servers can cache the
parsed query.

    .venv/bin/pip install ".[examples]"   # gql and requests, from the checkout's root
    python examples/screen.py [http://127.0.0.1:8000/graphql]
"""

import asyncio
import os
import sys

from gql import Client, gql
from gql.transport.aiohttp import AIOHTTPTransport

URL = (
    sys.argv[1]
    if len(sys.argv) > 1
    else os.environ.get("GQLBATCH_URL", "http://127.0.0.1:8000/graphql")
)

SCREEN = gql("""
query Screen($userPath: String!) {
  batch(requests: [
    {requestId: "user", path: $userPath}
    {requestId: "posts", path: "/posts", query: {userId: "{resultOf(user).id}"}}
    {requestId: "comments", path: "/comments", query: {postId: "{resultOf(posts)[0].id}"}}
  ]) {
    user: item(requestId: "user") { ... on Succeeded { body(select: ["id", "name"]) } }
    posts: item(requestId: "posts") { ... on Succeeded { body(select: ["id", "title"]) } }
    comments: item(requestId: "comments") {
      state
      ... on Succeeded { body(select: ["body"]) }
      error { code message }
    }
    stats { subRequests upstreamCalls wallMs criticalPathMs }
  }
}
""")


async def main() -> int:
    async with Client(transport=AIOHTTPTransport(url=URL)) as session:
        SCREEN.variable_values = {"userPath": "/users/1"}
        result = await session.execute(SCREEN)
    batch = result["batch"]
    user = batch["user"]["body"]
    print(f"user {user['id']}: {user['name']}")
    print(f"{len(batch['posts']['body'])} posts, first: {batch['posts']['body'][0]['title']}")
    print(f"{len(batch['comments']['body'])} comments on the first post")
    stats = batch["stats"]
    print(
        f"{stats['subRequests']} sub-requests, {stats['upstreamCalls']} upstream calls, "
        f"{stats['wallMs']:.1f} ms (critical path {stats['criticalPathMs']:.1f} ms)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
