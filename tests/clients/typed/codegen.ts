import type { CodegenConfig } from "@graphql-codegen/cli";
const config: CodegenConfig = {
  schema: "schema.graphql",
  documents: ["src/**/*.ts"],
  ignoreNoDocuments: false,
  generates: { "./src/gql/": { preset: "client", config: { scalars: { JSON: "unknown" } } } },
};
export default config;
