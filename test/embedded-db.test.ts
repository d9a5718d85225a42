import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { startApp } from "../src/app.ts";
import { MODEL_DIR } from "./helpers.ts";
import { create, eventsOverSse, gql } from "./server-helpers.ts";

test("with no DATABASE_URL the embedded PostgreSQL keeps history in MOSAIC_DATA_DIR across restarts", async () => {
  const dataDir = await mkdtemp(path.join(tmpdir(), "mosaic-data-"));
  const port = 50000 + Math.floor(Math.random() * 5000);
  const start = () => startApp({ role: "all", port: 0, dataDir, embeddedPort: port, modelFolder: MODEL_DIR, provider: "cpu", log: () => {} });
  try {
    let app = await start();
    assert.ok(app.db.embedded, "embedded database in use");
    assert.ok(existsSync(path.join(dataDir, "postgres", "PG_VERSION")));
    const g = await create(app, { prompt: "a small white triangle at the top, red background", seed: 41 });
    assert.equal((await eventsOverSse(app, g.id)).pop().__typename, "Completed");
    await app.close();
    // Stopped cleanly: the port is free again and a new start reuses the same data.
    app = await start();
    const r = await gql(app, `query($id: ID!) { generation(id: $id) { status prompt } }`, { id: g.id });
    assert.deepEqual(r.data.generation, { status: "COMPLETED", prompt: "a small white triangle at the top, red background" });
    await app.close();
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});
