// The JavaScript clients of docs/clients.md, run against a real gateway in front of the demo's
// sample API: Apollo Client (possibleTypes, type policies, persisted queries, BatchHttpLink),
// urql (document cache and Graphcache) and graphql-request (batchRequests).
// tests/test_clients.py copies this file beside its node_modules and runs it:
//     node clients.mjs http://127.0.0.1:PORT/graphql "$(gqlbatch export-schema --possible-types)"
// It prints one JSON object of findings, which the test checks.
import { createHash } from "node:crypto";

import { ApolloClient, InMemoryCache, gql, ApolloLink } from "@apollo/client";
import { BatchHttpLink } from "@apollo/client/link/batch-http";
import { HttpLink } from "@apollo/client/link/http";
import { createPersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { Client, cacheExchange as documentCache, fetchExchange } from "@urql/core";
import { cacheExchange as graphcache } from "@urql/exchange-graphcache";
import { batchRequests, request } from "graphql-request";
import { getIntrospectionQuery } from "graphql";

const url = process.argv[2];
const sha256 = (text) => createHash("sha256").update(text).digest("hex");
const findings = {};
const warnings = [];
console.warn = (...args) => warnings.push(args.join(" "));
console.error = (...args) => warnings.push(args.join(" "));

// `gqlbatch export-schema --possible-types`: every interface and union, and its members.
const possibleTypes = JSON.parse(process.argv[3]);
// Results have no id of their own. Two screens that run the same batch and select different
// fields of its items replace each other's `items` list (Apollo replaces lists whole), so
// each evicts the other and refetches: merge the items of one batch by position, which is
// theirs (an answer keeps the client's order), and merge the batch object itself.
const typePolicies = {
  BatchResult: {
    keyFields: false,
    merge: true,
    fields: {
      items: {
        merge(existing = [], incoming, { mergeObjects }) {
          return incoming.map((item, i) => (existing[i] ? mergeObjects(existing[i], item) : item));
        },
      },
    },
  },
};

const USER = gql`
  query User {
    batch(requests: [{ requestId: "user", path: "/users/1" }]) {
      items {
        requestId
        ... on Succeeded { status body }
        ... on Failed { error { code message } }
      }
    }
  }
`;
const POSTS = gql`
  query Posts {
    batch(requests: [{ requestId: "posts", path: "/posts", query: { userId: 1 } }]) {
      items { requestId ... on Succeeded { status } }
    }
  }
`;

function apollo(cache, link) {
  return new ApolloClient({ cache, link });
}

// 1. Without possibleTypes, a fragment on the ItemResult interface matches nothing: the
//    cache cannot know that Succeeded implements it, and its fields are dropped, silently.
//    (Inline fragments on the concrete types, as in USER, work either way.)
const ONE = gql`
  query One {
    batch(requests: [{ requestId: "user", path: "/users/1" }]) {
      item(requestId: "user") { ...Item }
    }
  }
  fragment Item on ItemResult { status ... on Succeeded { body } }
`;
for (const [name, cache] of [
  ["withoutPossibleTypes", new InMemoryCache()],
  ["withPossibleTypesOnly", new InMemoryCache({ possibleTypes })],
]) {
  const client = apollo(cache, new HttpLink({ uri: url }));
  const { data } = await client.query({ query: ONE });
  findings[name] = data?.batch?.item ?? null;
}

// 2. Two screens on the same batch, each with its own fields: without the type policies the
//    second evicts the first from the cache; with them both stay.
const STATUS = gql`
  query Status { batch(requests: [{ requestId: "user", path: "/users/1" }]) { items { requestId status } } }
`;
const BODY = gql`
  query Body {
    batch(requests: [{ requestId: "user", path: "/users/1" }]) { items { requestId ... on Succeeded { body } } }
  }
`;
for (const [name, cache] of [
  ["twoScreensWithoutPolicies", new InMemoryCache({ possibleTypes })],
  ["twoScreensWithPolicies", new InMemoryCache({ possibleTypes, typePolicies })],
]) {
  const client = apollo(cache, new HttpLink({ uri: url }));
  await client.query({ query: STATUS });
  await client.query({ query: BODY });
  findings[name] = {
    status: client.readQuery({ query: STATUS }) !== null,
    body: client.readQuery({ query: BODY }) !== null,
  };
}

// 3. Persisted queries over GET, then operation batching with BatchHttpLink.
{
  const seen = [];
  const spy = new ApolloLink((operation, forward) => {
    seen.push(operation.extensions?.persistedQuery ? "hash" : "document");
    return forward(operation);
  });
  const client = apollo(
    new InMemoryCache({ possibleTypes, typePolicies }),
    ApolloLink.from([
      createPersistedQueryLink({ sha256, useGETForHashedQueries: true }),
      spy,
      new HttpLink({ uri: url }),
    ]),
  );
  const first = await client.query({ query: USER, fetchPolicy: "network-only" });
  const second = await client.query({ query: USER, fetchPolicy: "network-only" });
  findings.persisted = {
    first: first.data.batch.items[0].status,
    second: second.data.batch.items[0].status,
    sent: seen,
  };
}
{
  const client = apollo(
    new InMemoryCache({ possibleTypes, typePolicies }),
    new BatchHttpLink({ uri: url, batchMax: 10, batchInterval: 20 }),
  );
  const [user, posts] = await Promise.all([
    client.query({ query: USER }),
    client.query({ query: POSTS }),
  ]);
  findings.batchHttpLink = [user.data.batch.items[0].status, posts.data.batch.items[0].status];
}

// 4. urql: its document cache needs nothing. Graphcache needs keys for the types without an
//    id, and the schema (introspected) to match fragments: its `possibleTypes` option alone
//    still warns on `... on Failed` beside `... on Succeeded`.
{
  const client = new Client({ url, exchanges: [documentCache, fetchExchange] });
  const result = await client.query(USER, {}).toPromise();
  findings.urql = result.data?.batch?.items?.[0]?.body?.name ?? String(result.error);
}
{
  const keys = Object.fromEntries(
    ["BatchResult", "Succeeded", "Failed", "Skipped", "Cancelled", "BatchStats"].map((t) => [t, () => null]),
  );
  const introspection = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ query: getIntrospectionQuery() }),
  }).then((r) => r.json());
  const client = new Client({
    url,
    exchanges: [graphcache({ keys, schema: introspection.data }), fetchExchange],
  });
  const result = await client.query(USER, {}).toPromise();
  findings.graphcache = result.data?.batch?.items?.[0]?.body?.name ?? String(result.error);
}

// 5. graphql-request: one request, and several operations in one POST.
{
  const one = await request(url, USER);
  const [user, posts] = await batchRequests(url, [{ document: USER }, { document: POSTS }]);
  findings.graphqlRequest = {
    one: one.batch.items[0].body.name,
    batched: [user.data.batch.items[0].status, posts.data.batch.items[0].status],
  };
}

// 6. Typed data (the demo's upstream has an OpenAPI document): two screens read user 1
//    through different batches and fields; Apollo keeps one User:1 with both.
{
  const NAME = gql`
    query Name {
      batch(requests: [{ requestId: "user", path: "/users/1" }]) {
        items { ... on Succeeded { data { ... on User { id name } } } }
      }
    }
  `;
  const EMAILS = gql`
    query Emails {
      batch(requests: [{ requestId: "users", path: "/users", query: { id: [1, 2] } }]) {
        items { ... on Succeeded { data { ... on UserList { items { id email } } } } }
      }
    }
  `;
  const cache = new InMemoryCache({ possibleTypes, typePolicies });
  const client = apollo(cache, new HttpLink({ uri: url }));
  await client.query({ query: NAME });
  await client.query({ query: EMAILS });
  findings.normalizedUser = cache.extract()["User:1"] ?? null;
}

findings.warnings = warnings.map((w) => w.slice(0, 200));
console.log(JSON.stringify(findings));
