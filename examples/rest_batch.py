"""A plain REST batch with `requests`: GET an item and POST a new one in one round trip, the
way Microsoft Graph's JSON batching does it; the second item reads the first one's id.

    .venv/bin/pip install ".[examples]"   # gql and requests, from the checkout's root
    python examples/rest_batch.py [http://127.0.0.1:8000/batch]
"""

import os
import sys

import requests

URL = (
    sys.argv[1]
    if len(sys.argv) > 1
    else os.environ.get("GQLBATCH_BATCH_URL", "http://127.0.0.1:8000/batch")
)

batch = {
    "requests": [
        {"id": "1", "method": "GET", "url": "/users/3"},
        {
            "id": "2",
            "method": "POST",
            "url": "/posts",
            "headers": {"Content-Type": "application/json"},
            "body": {"userId": "{resultOf(1).id}", "title": "Posted in a batch"},
            "dependsOn": ["1"],
        },
    ]
}

response = requests.post(URL, json=batch, timeout=30)
response.raise_for_status()
for item in response.json()["responses"]:
    print(item["id"], item["status"], item["body"])
