import { graphql } from "./gql";
import type { ScreenQuery } from "./gql/graphql";

export const Screen = graphql(`
  query Screen {
    batch(requests: [{ requestId: "user", path: "/users/1" }]) {
      items {
        __typename
        requestId
        ... on Succeeded { status body }
        ... on Failed { error { code message } }
      }
    }
  }
`);

export function userName(data: ScreenQuery): string {
  const item = data.batch?.items[0];
  if (item?.__typename === "Succeeded") {
    const body = item.body as { name?: string };
    return body.name ?? "";
  }
  if (item?.__typename === "Failed") {
    return `error ${item.error?.code}: ${item.error?.message}`;
  }
  return "";
}
