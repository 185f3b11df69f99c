"""An import as a job: the batch is accepted at once (`Prefer: respond-async`, 202 with a
Location), then read until it has ended, as an integrator's script would. With `[store] url`
set, any process reads it, and a `gqlbatch worker` that dies mid-job is replaced by another.

    .venv/bin/pip install ".[examples]"   # gql and requests, from the checkout's root
    python examples/job.py [http://127.0.0.1:8000/batch]
"""

import os
import sys
import time
from urllib.parse import urljoin

import requests

URL = (
    sys.argv[1]
    if len(sys.argv) > 1
    else os.environ.get("GQLBATCH_BATCH_URL", "http://127.0.0.1:8000/batch")
)

records = [{"userId": 1, "title": f"Imported {n}"} for n in range(1, 6)]
batch = [
    {"id": f"post-{n}", "method": "POST", "url": "/posts", "body": record}
    for n, record in enumerate(records, 1)
]

accepted = requests.post(URL, json=batch, headers={"Prefer": "respond-async"}, timeout=30)
accepted.raise_for_status()
location = urljoin(URL, accepted.headers["Location"])
print("accepted:", accepted.status_code, accepted.json()["state"])

wait_s = int(accepted.headers.get("Retry-After", "1"))  # the server's advice, in seconds
for _ in range(60):  # a minute or so at most
    job = requests.get(location, timeout=30).json()
    if job["state"] != "RUNNING":
        break
    time.sleep(wait_s)
print("job:", job["state"], f"{job['progress']['done']}/{job['progress']['total']}")
for response in job["responses"]:
    print(response["id"], response["status"], response["body"]["title"])
