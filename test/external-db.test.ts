import assert from "node:assert/strict";
import { test } from "node:test";
import pg from "pg";
import { create, createTestDatabase, eventsOverSse, gql, startTestApp } from "./server-helpers.ts";

// The other database path: an external PostgreSQL given by URL (the other tests use DATABASE_URL
// when set, else an embedded server). CI sets MOSAIC_TEST_REQUIRE_EXTERNAL_DB so this cannot skip there.
const URL_ = process.env.MOSAIC_TEST_EXTERNAL_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/test";

async function reachable(): Promise<boolean> {
  const c = new pg.Client({ connectionString: URL_, connectionTimeoutMillis: 2000 });
  try {
    await c.connect();
    await c.end();
    return true;
  } catch {
    return false;
  }
}

test("an external PostgreSQL given by URL: migrations, a full generation, history kept", async (t) => {
  if (!(await reachable())) {
    if (process.env.MOSAIC_TEST_REQUIRE_EXTERNAL_DB) assert.fail(`no PostgreSQL at ${URL_}`);
    t.skip(`no PostgreSQL at ${URL_}`);
    return;
  }
  const db = await createTestDatabase(URL_);
  try {
    let app = await startTestApp(db.url, "all");
    const g = await create(app, { prompt: "a big yellow circle on the left, purple background", seed: 31 });
    const events = await eventsOverSse(app, g.id);
    assert.equal(events[events.length - 1].__typename, "Completed");
    await app.close();
    // A second start finds its migrations applied and its history intact.
    app = await startTestApp(db.url, "api");
    const again = await gql(app, `query($id: ID!) { generation(id: $id) { status images { seed } } }`, { id: g.id });
    assert.deepEqual(again.data.generation, { status: "COMPLETED", images: [{ seed: 31 }] });
    await app.close();
  } finally {
    await db.drop();
  }
});
