// Runs graphql-http's server audits (the GraphQL over HTTP spec's test suite) against the URL
// given, and prints one line per audit that is not "ok", then "passed/total".
// Usage: node audit.cjs URL NODE_MODULES_DIR
const path = require('node:path');
const { auditServer } = require(path.join(process.argv[3], 'graphql-http'));

auditServer({ url: process.argv[2] }).then((results) => {
  for (const result of results.filter((r) => r.status !== 'ok')) {
    console.log(`${result.status} ${result.id} ${result.name}: ${result.reason}`);
  }
  console.log(`${results.filter((r) => r.status === 'ok').length}/${results.length}`);
});
