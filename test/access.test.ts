/**
 * Keys, ownership, visibility, signed picture links and quotas, against a real server and database:
 * `mosaic keys` as a real process, MOSAIC_AUTH=required over HTTP, SSE and graphql-ws, and limits
 * hit concurrently.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { createClient as createSseClient } from "graphql-sse";
import { createClient as createWsClient } from "graphql-ws";
import WebSocket from "ws";
import type { App } from "../src/app.ts";
import { DEFAULT_ACCESS } from "../src/auth/access.ts";
import { UrlSigner } from "../src/auth/signing.ts";
import { serverConfig } from "../src/config.ts";
import { PACKAGE_ROOT } from "../src/engine/settings.ts";
import type { Json } from "./helpers.ts";
import { CREATE, createTestDatabase, gql, sql, startTestApp, stopEmbedded, uuidOf, waitFor, type TestDatabase } from "./server-helpers.ts";

const run = promisify(execFile);
const MOSAIC = path.join(PACKAGE_ROOT, "bin", "mosaic.js");
const PROMPT = "a big red circle in the centre, blue background";

let db: TestDatabase;

async function keys(...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [MOSAIC, "keys", ...args], { env: { ...process.env, DATABASE_URL: db.url } });
  return stdout;
}

/** `mosaic keys create`: the key is the last line. */
async function newKey(name: string, admin = false): Promise<string> {
  const out = await keys("create", name, ...(admin ? ["--admin"] : []));
  return out.trim().split("\n").at(-1)!;
}

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
const codeOf = (r: { errors?: { extensions?: { code?: string } }[] }) => r.errors?.[0]?.extensions?.code;

async function createAs(app: App, key: string | null, input: Record<string, unknown>, headers: Record<string, string> = {}) {
  return gql(app, CREATE, { input: { prompt: PROMPT, previewInterval: 0, ...input } }, { ...(key ? bearer(key) : {}), ...headers });
}

before(async () => {
  db = await createTestDatabase();
  // The schema exists before the CLI runs (it would apply it too, but one at a time keeps this simple).
  await (await startTestApp(db.url, "api")).close();
});

after(async () => {
  await db?.drop();
  await stopEmbedded();
});

describe("keys and MOSAIC_AUTH=required", () => {
  let app: App;
  let alice: string;
  let bob: string;
  let admin: string;

  before(async () => {
    alice = await newKey("alice");
    bob = await newKey("bob");
    admin = await newKey("root", true);
    app = await startTestApp(db.url, "all", { access: { ...DEFAULT_ACCESS, auth: "required" } });
  });
  after(() => app?.close());

  test("mosaic keys: the key is printed once, stored hashed, listed without it", async () => {
    assert.match(alice, /^mosaic_[A-Za-z0-9_-]{43}$/);
    const list = await keys("list");
    assert.match(list, /^alice\tuser\tcreated .*\tactive$/m);
    assert.match(list, /^root\tadmin\t/m);
    assert.ok(!list.includes(alice), "list shows no key");
    const rows = await sql(db.url, `SELECT hash FROM "ApiKey" WHERE name = 'alice'`);
    assert.notEqual(rows[0].hash, alice);
    assert.equal(rows[0].hash.length, 64);
    await assert.rejects(keys("create", "alice"), /exists already/);
  });

  test("no key or a wrong key: UNAUTHENTICATED with 401 over HTTP", async () => {
    for (const headers of [{}, bearer("mosaic_wrong"), { authorization: "Basic abc" }]) {
      const res = await fetch(app.url!, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify({ query: "{ health { ok } }" }) });
      assert.equal(res.status, 401);
      const body = (await res.json()) as Json;
      assert.equal(body.errors[0].extensions.code, "UNAUTHENTICATED");
      assert.ok(!JSON.stringify(body).includes("at "), "no stack");
    }
    const ok = await gql(app, "{ health { ok } }", {}, bearer(alice));
    assert.equal(ok.data?.health.ok, true);
  });

  test("graphql-ws: the key in connectionParams, refused without it", async () => {
    const url = app.url!.replace(/^http/, "ws");
    const refused = createWsClient({ url, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
    const closed = await new Promise<number>((resolve) => refused.on("closed", (e) => resolve((e as { code: number }).code)));
    assert.equal(closed, 4403);
    await refused.dispose();
    const client = createWsClient({ url, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${alice}` } });
    try {
      for await (const r of client.iterate({ query: "{ health { ok } }" })) assert.equal((r.data as Json).health.ok, true);
    } finally {
      await client.dispose();
    }
  });

  test("ownership: private by default, not found for others, FORBIDDEN to change a public one, admins may", async () => {
    const mine = await createAs(app, alice, { count: 1 });
    const g = mine.data!.createGeneration;
    const see = (key: string) => gql(app, `query($id: ID!) { generation(id: $id) { id visibility mine } node(id: $id) { id } generations { edges { node { id } } } }`, { id: g.id }, bearer(key));
    const own = await see(alice);
    assert.deepEqual([own.data!.generation.visibility, own.data!.generation.mine], ["PRIVATE", true]);
    const other = await see(bob);
    assert.equal(other.data!.generation, null);
    assert.equal(other.data!.node, null);
    assert.ok(!other.data!.generations.edges.some((e: Json) => e.node.id === g.id));
    const cancel = `mutation($id: ID!) { cancelGeneration(id: $id) { status } }`;
    assert.equal(codeOf(await gql(app, cancel, { id: g.id }, bearer(bob))), "NOT_FOUND");
    const sub = createSseClient({ url: app.url!, headers: bearer(bob) });
    await assert.rejects(async () => {
      for await (const r of sub.iterate({ query: `subscription($id: ID!) { generationEvents(id: $id) { __typename } }`, variables: { id: g.id } })) {
        if (r.errors) throw new Error(r.errors[0]!.message);
      }
    }, /no generation/);
    sub.dispose();

    const pub = (await createAs(app, alice, { visibility: "PUBLIC" })).data!.createGeneration;
    assert.ok((await see(bob)).data, "bob can look");
    assert.equal(codeOf(await gql(app, cancel, { id: pub.id }, bearer(bob))), "FORBIDDEN");
    const byAdmin = await gql(app, cancel, { id: pub.id }, bearer(admin));
    assert.ok(["CANCELLED", "RUNNING", "COMPLETED"].includes(byAdmin.data!.cancelGeneration.status));
    assert.equal((await see(admin)).data!.generation.id, g.id, "an admin sees private generations");
  });

  test("deleteGeneration removes the generation with its images; only the owner or an admin", async () => {
    const g = (await createAs(app, alice, { count: 2, previewInterval: 64 })).data!.createGeneration;
    await eventsOverSseAs(app, g.id, alice);
    const id = uuidOf(g.id);
    assert.equal((await sql(db.url, `SELECT count(*)::int AS n FROM "Image" WHERE "generationId" = $1`, [id]))[0].n, 2);
    const del = `mutation($id: ID!) { deleteGeneration(id: $id) }`;
    assert.equal(codeOf(await gql(app, del, { id: g.id }, bearer(bob))), "NOT_FOUND");
    const r = await gql(app, del, { id: g.id }, bearer(alice));
    assert.equal(r.data!.deleteGeneration, g.id);
    for (const table of ["Generation", "Image", "Preview"]) {
      const col = table === "Generation" ? "id" : `"generationId"`;
      assert.equal((await sql(db.url, `SELECT count(*)::int AS n FROM "${table}" WHERE ${col} = $1`, [id]))[0].n, 0, table);
    }
    assert.equal(codeOf(await gql(app, del, { id: g.id }, bearer(alice))), "NOT_FOUND");
  });

  test("pictures: signed links work without headers; unsigned, tampered or another picture's signature do not", async () => {
    const g = (await createAs(app, alice, { count: 2 })).data!.createGeneration;
    await eventsOverSseAs(app, g.id, alice);
    const r = await gql(app, `query($id: ID!) { generation(id: $id) { images { url(format: WEBP, size: 128) } } }`, { id: g.id }, bearer(alice));
    const [a, b] = r.data!.generation.images.map((i: Json) => new URL(i.url as string));
    const got = await fetch(a);
    assert.equal(got.status, 200);
    assert.equal(got.headers.get("content-type"), "image/webp");
    assert.match(got.headers.get("cache-control")!, /^private, max-age=\d+$/);
    const bare = new URL(a.pathname, a);
    assert.equal((await fetch(bare)).status, 403);
    const tampered = new URL(a);
    tampered.searchParams.set("expires", String(Number(a.searchParams.get("expires")) + 3600));
    assert.equal((await fetch(tampered)).status, 403);
    const swapped = new URL(a);
    swapped.searchParams.set("sig", b.searchParams.get("sig")!);
    assert.equal((await fetch(swapped)).status, 403);
  });

  test("a revoked key stops working", async () => {
    const key = await newKey("short-lived");
    assert.equal((await gql(app, "{ health { ok } }", {}, bearer(key))).data?.health.ok, true);
    assert.match(await keys("revoke", "short-lived"), /revoked key "short-lived"/);
    // Lookups are cached for a few seconds per process (KEY_CACHE_MS).
    const deadline = Date.now() + 10_000;
    let code: string | undefined;
    while (Date.now() < deadline && code !== "UNAUTHENTICATED") {
      code = codeOf(await gql(app, "{ health { ok } }", {}, bearer(key)));
      if (code !== "UNAUTHENTICATED") await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(code, "UNAUTHENTICATED");
    assert.match(await keys("list"), /^short-lived\tuser\t.*\trevoked /m);
  });
});

async function eventsOverSseAs(app: App, id: string, key: string): Promise<void> {
  const client = createSseClient({ url: app.url!, headers: bearer(key) });
  try {
    for await (const r of client.iterate({ query: `subscription($id: ID!) { generationEvents(id: $id) { __typename } }`, variables: { id } })) {
      if (r.errors) throw new Error(JSON.stringify(r.errors));
    }
  } finally {
    client.dispose();
  }
}

test("signed links expire", () => {
  let now = Date.UTC(2026, 0, 1);
  const signer = new UrlSigner(Buffer.from("secret"), 60, () => now);
  const { expires, sig } = signer.sign("/images/x");
  assert.ok(signer.check("/images/x", expires, sig)! > 60 - 1);
  assert.equal(signer.check("/images/y", expires, sig), null);
  now += 121_000;
  assert.equal(signer.check("/images/x", expires, sig), null);
});

describe("quotas (MOSAIC_AUTH=off: per client address)", () => {
  let app: App;
  const quotas = { active: 2, imagesPerHour: 5, queueLimit: 6 };

  before(async () => {
    // An API process only: nothing runs the queue, so generations stay active.
    app = await startTestApp(db.url, "api", { trustProxy: true, access: { ...DEFAULT_ACCESS, quotas } });
    await sql(db.url, `DELETE FROM "Generation"`);
  });
  after(() => app?.close());

  const from = (address: string) => ({ "x-forwarded-for": address });
  const generations = async () => (await sql(db.url, `SELECT count(*)::int AS n FROM "Generation"`))[0].n as number;

  test("active generations: 10 concurrent requests from one address admit exactly 2; RATE_LIMITED with retryAfterSeconds and 429", async () => {
    const results = await Promise.all(Array.from({ length: 10 }, () => createAs(app, null, { count: 1 }, from("10.0.0.1"))));
    assert.equal(results.filter((r) => r.data?.createGeneration).length, 2);
    const refused = results.filter((r) => r.errors);
    assert.equal(refused.length, 8);
    for (const r of refused) {
      assert.equal(codeOf(r), "RATE_LIMITED");
      assert.ok((r.errors![0]!.extensions as Json).retryAfterSeconds >= 1);
    }
    assert.equal(await generations(), 2, "nothing stored for refused requests");
    const res = await fetch(app.url!, {
      method: "POST", headers: { "content-type": "application/json", accept: "application/graphql-response+json", ...from("10.0.0.1") },
      body: JSON.stringify({ query: CREATE, variables: { input: { prompt: PROMPT } } }),
    });
    assert.equal(res.status, 429);
    assert.ok(Number(res.headers.get("retry-after")) >= 1);
    // Another address has its own allowance.
    assert.ok((await createAs(app, null, { count: 1 }, from("10.0.0.2"))).data?.createGeneration);
  });

  test("images per hour: the next request that would pass the limit is refused until the hour has room", async () => {
    const ip = from("10.0.0.3");
    assert.ok((await createAs(app, null, { count: 4 }, ip)).data?.createGeneration);
    await sql(db.url, `UPDATE "Generation" SET status = 'COMPLETED', "finishedAt" = now() WHERE "ownerAddress" = '10.0.0.3'`);
    const over = await createAs(app, null, { count: 2 }, ip);
    assert.equal(codeOf(over), "RATE_LIMITED");
    const wait = (over.errors![0]!.extensions as Json).retryAfterSeconds as number;
    assert.ok(wait > 3500 && wait <= 3600, `retry after ${wait} s`);
    assert.ok((await createAs(app, null, { count: 1 }, ip)).data?.createGeneration, "one more fits");
    // An hour later the first generation has aged out.
    await sql(db.url, `UPDATE "Generation" SET "createdAt" = now() - interval '61 minutes' WHERE "ownerAddress" = '10.0.0.3' AND count = 4`);
    await sql(db.url, `UPDATE "Generation" SET status = 'COMPLETED', "finishedAt" = now() WHERE "ownerAddress" = '10.0.0.3'`);
    assert.ok((await createAs(app, null, { count: 2 }, ip)).data?.createGeneration);
  });

  test("the global queue limit: QUEUE_FULL with 503", async () => {
    await sql(db.url, `DELETE FROM "Generation"`);
    for (let i = 0; i < 6; i++) assert.ok((await createAs(app, null, { count: 1 }, from(`10.1.0.${i}`))).data?.createGeneration);
    const full = await createAs(app, null, { count: 1 }, from("10.1.1.1"));
    assert.equal(codeOf(full), "QUEUE_FULL");
    assert.equal(await generations(), 6);
  });

  test("without a key, PRIVATE is refused and everything made is public", async () => {
    await sql(db.url, `DELETE FROM "Generation"`);
    assert.equal(codeOf(await createAs(app, null, { visibility: "PRIVATE" }, from("10.2.0.1"))), "BAD_INPUT");
    const g = (await createAs(app, null, {}, from("10.2.0.1"))).data!.createGeneration;
    const r = await gql(app, `query($id: ID!) { generation(id: $id) { visibility mine } }`, { id: g.id });
    assert.deepEqual(r.data!.generation, { visibility: "PUBLIC", mine: false });
  });
});

test("graphql-ws: at most MOSAIC_WS_MAX_SUBSCRIPTIONS operations per connection", async () => {
  const app = await startTestApp(db.url, "api", { access: { ...DEFAULT_ACCESS, maxSubscriptionsPerSocket: 2 } });
  const g = (await createAs(app, null, {})).data!.createGeneration;
  const client = createWsClient({ url: app.url!.replace(/^http/, "ws"), webSocketImpl: WebSocket });
  try {
    const open = [0, 1].map(() => client.iterate({ query: `subscription($id: ID!) { generationEvents(id: $id) { __typename } }`, variables: { id: g.id } }));
    for (const it of open) await it.next(); // both are live (Queued)
    const third = client.iterate({ query: `subscription($id: ID!) { generationEvents(id: $id) { __typename } }`, variables: { id: g.id } });
    await assert.rejects(third.next(), (e: unknown) => JSON.stringify(e).includes("TOO_MANY_SUBSCRIPTIONS"));
    for (const it of open) await it.return?.(undefined);
    // Leaving a quiet (queued) generation ends its watch at once: it stops polling the database.
    const open_ = async () => (await app.metrics.registry.getSingleMetric("mosaic_active_subscriptions")!.get()).values[0]!.value;
    await waitFor("the watches to end", async () => (await open_()) === 0, 5_000);
  } finally {
    await client.dispose();
    await app.close();
  }
});



test("GraphiQL and introspection are off by default when keys are required; MOSAIC_AUTH is checked", () => {
  const saved = { ...process.env };
  try {
    delete process.env.MOSAIC_GRAPHIQL;
    process.env.MOSAIC_AUTH = "required";
    assert.deepEqual([serverConfig().graphiql, serverConfig().access.auth], [false, "required"]);
    process.env.MOSAIC_GRAPHIQL = "1";
    assert.equal(serverConfig().graphiql, true);
    delete process.env.MOSAIC_AUTH;
    delete process.env.MOSAIC_GRAPHIQL;
    assert.deepEqual([serverConfig().graphiql, serverConfig().access.auth], [true, "off"]);
    process.env.MOSAIC_AUTH = "maybe";
    assert.throws(() => serverConfig(), /MOSAIC_AUTH must be off or required/);
    delete process.env.MOSAIC_AUTH;
    // Whole numbers in digits, within their range: 1e99 seconds would sign links no check accepts.
    for (const ttl of ["1e99", "0x10", "31536001", "1.5"]) {
      process.env.MOSAIC_URL_TTL_SECONDS = ttl;
      assert.throws(() => serverConfig(), /MOSAIC_URL_TTL_SECONDS must be a whole number from 1 to 31536000/, ttl);
    }
    process.env.MOSAIC_URL_TTL_SECONDS = "86400";
    for (const bad of ["mosaic.example.com", "ftp://mosaic.example.com", "https://user:pw@mosaic.example.com", "https://mosaic.example.com/?a=1", "https://mosaic.example.com/#x", "https://h?", "https://h#", "https://[::1"]) {
      process.env.MOSAIC_PUBLIC_URL = bad;
      assert.throws(() => serverConfig(), /MOSAIC_PUBLIC_URL must be an http:\/\/ or https:\/\/ address/, bad);
    }
    process.env.MOSAIC_PUBLIC_URL = "https://Mosaic.example.com:8443/pics/";
    assert.equal(serverConfig().publicUrl, "https://mosaic.example.com:8443/pics");
    process.env.MOSAIC_PUBLIC_URL = "http://[::1]:8080";
    assert.equal(serverConfig().publicUrl, "http://[::1]:8080");
    delete process.env.MOSAIC_PUBLIC_URL;
    assert.equal(serverConfig().publicUrl, undefined);
    assert.equal(serverConfig().access.urlTtlSeconds, 86_400);
    // Ports too: the same digits-only reading.
    for (const port of ["0x10", "1e3"]) {
      process.env.PORT = port;
      assert.throws(() => serverConfig(), /PORT must be a port number/, port);
      assert.throws(() => serverConfig({ port }), /--port must be a port number/, port);
    }
    process.env.PORT = "4001";
    assert.equal(serverConfig().port, 4001);
  } finally {
    process.env = saved;
  }
});
