#!/usr/bin/env bash
# Create a post and read it back in one request, with curl alone; then send an invalid batch
# and see it rejected whole. Runs against `gqlbatch demo`.
#
#     bash examples/batch.sh [http://127.0.0.1:8000/graphql]
set -euo pipefail
url="${1:-${GQLBATCH_URL:-http://127.0.0.1:8000/graphql}}"

echo "== create, then read back through {resultOf(create).id}"
curl -sS --fail "$url" -H 'Content-Type: application/json' -d @- <<'JSON'
{"query": "mutation($r: [SubRequestInput!]!) { batch(requests: $r) { items { requestId state status body } } }",
 "variables": {"r": [
   {"requestId": "create", "method": "POST", "path": "/posts", "body": {"userId": 1, "title": "From curl"}},
   {"requestId": "read", "path": "/posts/{resultOf(create).id}"}
 ]}}
JSON
echo

echo "== an invalid batch: a cycle, an unknown dependency and a duplicate id, all listed"
curl -sS "$url" -H 'Content-Type: application/json' -d @- <<'JSON'
{"query": "mutation($r: [SubRequestInput!]!) { batch(requests: $r) { items { state } } }",
 "variables": {"r": [
   {"requestId": "a", "path": "/users/1", "dependsOn": ["b"]},
   {"requestId": "b", "path": "/users/2", "dependsOn": ["a"]},
   {"requestId": "c", "path": "/users/3", "dependsOn": ["ghost"]},
   {"requestId": "c", "path": "/users/4"}
 ]}}
JSON
echo
