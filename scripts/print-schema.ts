/** Writes schema.graphql from the code-first schema (npm run schema); a test fails when it is stale. */
import { writeFileSync } from "node:fs";
import path from "node:path";
import { lexicographicSortSchema, printSchema } from "graphql";
import { PACKAGE_ROOT } from "../src/engine/settings.ts";
import { schema } from "../src/graphql/schema.ts";

export const SCHEMA_FILE = path.join(PACKAGE_ROOT, "schema.graphql");
export const printed = () => `${printSchema(lexicographicSortSchema(schema))}\n`;

if (import.meta.url === `file://${process.argv[1]}`) {
  writeFileSync(SCHEMA_FILE, printed());
  console.log(`wrote ${SCHEMA_FILE}`);
}
