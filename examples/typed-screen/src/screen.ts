// The README's screen. Its answers are typed by the sample API's OpenAPI document: `data` is a
// User, a PostList, a CommentListEach, and TypeScript checks every field the screen reads.
import { graphql } from "./gql";
import type { ScreenQuery } from "./gql/graphql";

export const Screen = graphql(`
  query Screen {
    batch(requests: [
      {requestId: "user", path: "/users/1"}
      {requestId: "posts", path: "/posts", query: {userId: "{resultOf(user).id}"}}
      {requestId: "comments", forEach: "{resultOf(posts)[*].id}", path: "/comments",
       query: {postId: "{item}"}}
    ]) {
      user: item(requestId: "user") {
        __typename
        ... on Succeeded { data { __typename ...UserCard } }
      }
      posts: item(requestId: "posts") {
        __typename
        ... on Succeeded { data { __typename ...PostTitles } }
      }
      comments: item(requestId: "comments") {
        __typename
        ... on Succeeded { data { __typename ...Threads } }
      }
    }
  }

  fragment UserCard on User { id name email }
  fragment PostTitles on PostList { items { id title } }
  fragment Threads on CommentListEach { items { items { postId body } } }
`);

type Batch = NonNullable<ScreenQuery["batch"]>;

export function userLine(batch: Batch): string {
  const user = batch.user;
  if (user?.__typename !== "Succeeded" || user.data?.__typename !== "User") {
    return "no user";
  }
  const id: string = user.data.id; // an ID, as normalized caches key by
  return `${id}: ${user.data.name ?? "?"} <${user.data.email ?? "no email"}>`;
}

export function postTitles(batch: Batch): string[] {
  const posts = batch.posts;
  if (posts?.__typename !== "Succeeded" || posts.data?.__typename !== "PostList") {
    return [];
  }
  return posts.data.items.map((post) => `#${post.id} ${post.title ?? ""}`);
}

export function commentCount(batch: Batch): number {
  const comments = batch.comments;
  if (comments?.__typename !== "Succeeded" || comments.data?.__typename !== "CommentListEach") {
    return 0;
  }
  // One slot per post; a slot is null when that post's call failed.
  return comments.data.items.reduce((sum, thread) => sum + (thread?.items.length ?? 0), 0);
}
