/**
 * The GraphQL over HTTP specification's audits (graphql-http's serverAudits) against a real server
 * with auth off: every MUST passes. SHOULD/MAY results are printed, not enforced.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { serverAudits } from "graphql-http";
import type { App } from "../src/app.ts";
import { createTestDatabase, startTestApp, stopEmbedded, type TestDatabase } from "./server-helpers.ts";

let db: TestDatabase;
let app: App;

before(async () => {
  db = await createTestDatabase();
  app = await startTestApp(db.url, "api");
});

after(async () => {
  await app?.close();
  await db?.drop();
  await stopEmbedded();
});

test("graphql-http audits: every MUST passes", async () => {
  const failures: string[] = [];
  const warnings: string[] = [];
  let ran = 0;
  for (const audit of serverAudits({ url: app.url!, fetchFn: fetch })) {
    const result = await audit.fn();
    ran++;
    if (result.status === "ok") continue;
    const line = `${audit.name}: ${result.reason}`;
    if (audit.name.startsWith("MUST")) failures.push(line);
    else warnings.push(line);
  }
  if (warnings.length) console.log(`graphql-http: ${warnings.length} SHOULD/MAY not met:\n${warnings.join("\n")}`);
  assert.ok(ran >= 30, `${ran} audits ran`);
  assert.deepEqual(failures, []);
});
