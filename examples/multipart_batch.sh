#!/usr/bin/env bash
# A multipart batch, Aspose style, with curl: part "create" POSTs a post, part "read" depends
# on it and reads it back through resultOf. The answer is multipart too, one HTTP response per
# part, in order, each with its Content-ID echoed.
#
#     bash examples/multipart_batch.sh [http://127.0.0.1:8000/batch]
set -euo pipefail
url="${1:-${GQLBATCH_BATCH_URL:-http://127.0.0.1:8000/batch}}"

body=$(printf '%s\r\n' \
  '--batch_boundary' \
  'Content-Type: application/http; msgtype=request' \
  'Content-ID: <create>' \
  'RequestId: create' \
  '' \
  'POST /posts HTTP/1.1' \
  'Content-Type: application/json' \
  '' \
  '{"userId": 2, "title": "Posted in a multipart batch"}' \
  '--batch_boundary' \
  'Content-Type: application/http; msgtype=request' \
  'Content-ID: <read>' \
  'RequestId: read' \
  'DependsOn: create' \
  '' \
  'GET /posts/{resultOf(create).id} HTTP/1.1' \
  'Accept: application/json' \
  '' \
  '--batch_boundary--')

curl -sS --fail "$url" -H 'Content-Type: multipart/mixed; boundary=batch_boundary' \
  --data-binary "$body"
echo
