// GraphQL Code Generator's client preset on the schema gqlbatch prints with the types of the
// demo's OpenAPI document (`npm run schema`). JSON stays `unknown`: the untyped `body` is a
// value to check before use, and typed fields are what `data` is for.
import type { CodegenConfig } from "@graphql-codegen/cli";

const config: CodegenConfig = {
  schema: "schema.graphql",
  documents: ["src/**/*.ts"],
  ignoreNoDocuments: false,
  generates: {
    "./src/gql/": {
      preset: "client",
      presetConfig: { fragmentMasking: false },
      config: { scalars: { JSON: "unknown" } },
    },
  },
};
export default config;
