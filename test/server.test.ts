import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { after, before, test } from "node:test";
import { assertValidSchema, isObjectType, isInterfaceType, isInputObjectType, isEnumType, isUnionType } from "graphql";
import sharp from "sharp";
import type { App } from "../src/app.ts";
import { PACKAGE_ROOT } from "../src/engine/settings.ts";
import { schema } from "../src/graphql/schema.ts";
import { printed } from "../scripts/print-schema.ts";
import type { Json } from "./helpers.ts";
import { mosaic } from "../src/engine/previews.ts";
import { unpackCodes } from "../src/jobs/codes.ts";
import { MODEL_DIR, shippedShape } from "./helpers.ts";
import { loadModelInfo } from "../src/engine/model.ts";
import { create, createTestDatabase, eventsOverSse, eventsOverWs, gql, sql, startTestApp, stopEmbedded, uuidOf, waitFor, type TestDatabase } from "./server-helpers.ts";

let db: TestDatabase;
let app: App;
/** The shipped model's tokens per image (its scene plan's included) and preview points (model.json). */
const shape = shippedShape();

before(async () => {
  db = await createTestDatabase();
  app = await startTestApp(db.url, "all");
});

after(async () => {
  await app?.close();
  await db?.drop();
  await stopEmbedded();
});

function checkOrder(events: Json[]): void {
  const kinds = events.map((e) => e.__typename);
  assert.equal(kinds[kinds.length - 1], "Completed", kinds.join(","));
  const started = kinds.indexOf("Started");
  assert.ok(started >= 0, "Started is sent");
  assert.ok(kinds.slice(0, started).every((k) => k === "Queued"), "only Queued before Started");
  const progress = events.filter((e) => e.__typename === "Progress");
  const done = progress.map((e) => e.tokensDone);
  assert.deepEqual(done, [...done].sort((a, b) => a - b), "progress only moves forward");
  assert.equal(done[done.length - 1], shape.sequenceLength, "progress ends at the last token");
}

test("full flow over HTTP + SSE: create, events in order, images fetchable by URL", async () => {
  const g = await create(app, { prompt: "a big red circle in the centre, blue background", count: 2, seed: 11, previewInterval: 64 });
  assert.equal(g.status, "QUEUED");
  assert.equal(g.seed, 11);
  // A preview is fetchable while the generation runs (the final images supersede them at the end).
  let previewFetch: Promise<Response> | null = null;
  const events = await eventsOverSse(app, g.id, (e) => {
    if (!previewFetch && e.__typename === "Progress" && e.previews.length) previewFetch = fetch(e.previews[0].url);
  });
  checkOrder(events);
  const previewSteps = events.filter((e) => e.__typename === "Progress" && e.previews.length).map((e) => e.previews[0].tokensDone);
  // Previews are written with the progress, at most every 100 ms, and a newer one replaces one not yet
  // written (src/jobs/progress-writer.ts): on a fast machine two preview points fall in one write. What
  // a client is promised is order, each preview at most once, and the last one.
  const due = shape.previewSteps(64);
  assert.ok(previewSteps.every((t: number) => due.includes(t)), `previews at preview points only: ${previewSteps}`);
  assert.deepEqual(previewSteps, [...new Set(previewSteps)].sort((a, b) => a - b), "each preview once, in order");
  assert.equal(previewSteps[previewSteps.length - 1], due[due.length - 1], "the last preview always reaches the client");
  const done = events[events.length - 1].generation;
  assert.equal(done.status, "COMPLETED");
  assert.deepEqual(done.images.map((i: Json) => i.seed), [11, 12]);
  for (const img of done.images) {
    const res = await fetch(img.url);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "image/png");
    const meta = await sharp(Buffer.from(await res.arrayBuffer())).metadata();
    assert.equal(meta.width, 128, "the size argument is honoured");
  }
  const pres = await previewFetch!;
  assert.equal(pres.status, 200);
  assert.equal(pres.headers.get("content-type"), "image/png");
  const preview = events.find((e) => e.__typename === "Progress" && e.previews.length).previews[0];
  assert.equal((await fetch(preview.url)).status, 404, "a completed generation keeps no previews");
  assert.equal((await sql(app.db.url, `SELECT count(*)::int AS n FROM "Preview" WHERE "generationId" = $1`, [uuidOf(g.id)]))[0].n, 0);
});

test("a cancelled generation keeps only its newest previews", async () => {
  const g = await create(app, { prompt: "a big red circle in the centre, blue background", count: 2, seed: 5, previewInterval: 16 });
  await waitFor("64 tokens", async () => (await gql(app, `query($id: ID!) { generation(id: $id) { tokensDone } }`, { id: g.id })).data.generation.tokensDone >= 64, 60_000);
  await gql(app, `mutation($id: ID!) { cancelGeneration(id: $id) { status } }`, { id: g.id });
  const events = await eventsOverSse(app, g.id);
  assert.equal(events.pop().__typename, "Cancelled");
  const rows = await sql(app.db.url, `SELECT DISTINCT "tokensDone" FROM "Preview" WHERE "generationId" = $1`, [uuidOf(g.id)]);
  assert.equal(rows.length, 1, `one preview point kept: ${JSON.stringify(rows)}`);
  const r = await gql(app, `query($id: ID!) { generation(id: $id) { latestPreviews { index tokensDone } } }`, { id: g.id });
  assert.deepEqual(r.data.generation.latestPreviews.map((p: Json) => [p.index, p.tokensDone]), [[0, rows[0].tokensDone], [1, rows[0].tokensDone]]);
});

test("full flow over graphql-ws on the same port and path", async () => {
  const g = await create(app, { prompt: "a small yellow triangle on the left, purple background", seed: 3 });
  const events = await eventsOverWs(app, g.id);
  checkOrder(events);
  assert.equal(events[events.length - 1].generation.images.length, 1);
});

test("image routes: formats, ETag revalidation, 404 with a coded body, bad size", async () => {
  const g = await create(app, { prompt: "a big white square at the top, black background", seed: 4, previewInterval: 0 });
  await eventsOverSse(app, g.id);
  const r = await gql(app, `query($id: ID!) { generation(id: $id) { images { url(format: WEBP, size: 200, upscale: SMOOTH) jpeg: url(format: JPEG) dataUrl(format: PNG) } } }`, { id: g.id });
  const img = r.data.generation.images[0];
  const webp = await fetch(img.url);
  assert.equal(webp.headers.get("content-type"), "image/webp");
  assert.equal((await sharp(Buffer.from(await webp.arrayBuffer())).metadata()).width, 200);
  assert.match(webp.headers.get("cache-control")!, /immutable/);
  const etag = webp.headers.get("etag")!;
  const again = await fetch(img.url, { headers: { "if-none-match": etag } });
  assert.equal(again.status, 304);
  assert.equal((await fetch(img.jpeg)).headers.get("content-type"), "image/jpeg");
  assert.match(img.dataUrl, /^data:image\/png;base64,/);
  const base = new URL(app.url!).origin;
  const missing = await fetch(`${base}/images/00000000-0000-4000-8000-000000000000.png`);
  assert.equal(missing.status, 404);
  assert.equal(((await missing.json()) as Json).error.code, "NOT_FOUND");
  const bad = new URL(img.jpeg.replace(".jpeg?", ".png?"));
  bad.searchParams.set("size", "99999");
  assert.equal((await fetch(bad)).status, 400);
  // Sizes are digits: Number() would read these as 16, 1000 and 16.
  for (const size of ["0x10", "1e3", " 16"]) {
    bad.searchParams.set("size", size);
    assert.equal((await fetch(bad)).status, 400, size);
  }
  bad.searchParams.set("size", "16");
  assert.equal((await fetch(bad)).status, 200);
});

test("a late subscriber first gets the current state, then the outcome", async () => {
  const g = await create(app, { prompt: "a big green circle on the right, white background", seed: 8 });
  await eventsOverSse(app, g.id);
  const late = await eventsOverSse(app, g.id);
  assert.deepEqual(late.map((e) => e.__typename), ["Completed"]);
  assert.equal(late[0].generation.images.length, 1);

  // Joining mid-run: Started, then a Progress carrying the newest preview, then live events.
  const mid = await create(app, { prompt: "a small blue square at the bottom, orange background", count: 9, seed: 1, previewInterval: 16 });
  // Previews decode beside the decoder, so on a slow machine the decoder can pass 48 tokens before the
  // first preview is stored: wait for both (a preview is what the joining state must carry).
  await waitFor("48 tokens and a preview", async () => {
    const g = (await gql(app, `query($id: ID!) { generation(id: $id) { tokensDone latestPreviews { tokensDone } } }`, { id: mid.id })).data.generation;
    return g.tokensDone >= 48 && g.latestPreviews.length === 9;
  }, 60_000);
  const seen = await eventsOverSse(app, mid.id);
  assert.equal(seen[0].__typename, "Started", "joined while it runs");
  assert.equal(seen[1].__typename, "Progress");
  assert.ok(seen[1].tokensDone >= 48 && seen[1].tokensDone < shape.sequenceLength, `joined at ${seen[1].tokensDone}`);
  assert.equal(seen[1].previews.length, 9, "the latest preview comes with the current state");
  // The newest preview made so far: previews run beside the decoder (and a stale one is skipped when
  // the decoder gets ahead), so it may be behind the progress, never ahead of it.
  const shownAt = seen[1].previews[0].tokensDone;
  assert.ok(shape.previewSteps(16).includes(shownAt) && shownAt <= seen[1].tokensDone, `preview at ${shownAt}, progress at ${seen[1].tokensDone}`);
  assert.equal(seen[seen.length - 1].__typename, "Completed");
});

test("cancellation: a running generation stops within a step, a queued one at once without starting", async () => {
  const g = await create(app, { prompt: "a big purple triangle in the centre, green background", count: 9, seed: 2 });
  // 9 + 9 images do not fit the worker's batch of 16: this one waits in the queue.
  const queued = await create(app, { prompt: "a small red square on the left, yellow background", count: 9, seed: 2 });
  const q = await gql(app, `mutation($id: ID!) { cancelGeneration(id: $id) { status } }`, { id: queued.id });
  assert.equal(q.data.cancelGeneration.status, "CANCELLED", "cancelled while still queued");
  let cancelled = false;
  const events = await eventsOverSse(app, g.id, (e) => {
    if (!cancelled && e.__typename === "Progress") {
      cancelled = true;
      void gql(app, `mutation($id: ID!) { cancelGeneration(id: $id) { status } }`, { id: g.id });
    }
  });
  const last = events[events.length - 1];
  assert.equal(last.__typename, "Cancelled");
  assert.equal(last.generation.status, "CANCELLED");
  assert.ok(last.generation.tokensDone < shape.sequenceLength, `stopped at ${last.generation.tokensDone}`);
  assert.deepEqual((await eventsOverSse(app, queued.id)).map((e) => e.__typename), ["Cancelled"], "never started");
  const row = await gql(app, `query($id: ID!) { generation(id: $id) { startedAt tokensDone images { index } } }`, { id: queued.id });
  assert.deepEqual(row.data.generation, { startedAt: null, tokensDone: 0, images: [] });
  const none = await gql(app, `mutation { cancelGeneration(id: "R2VuZXJhdGlvbjowMDAwMDAwMC0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMDAwMDA=") { status } }`);
  assert.equal(none.errors?.[0]?.extensions?.code, "NOT_FOUND");
});

test("mosaic fields and latestPreviews show what the stored codes and previews hold", async () => {
  const g = await create(app, { prompt: "a big red circle in the centre, blue background", count: 2, seed: 1, previewInterval: 64 });
  const events = await eventsOverSse(app, g.id);
  assert.equal(events.pop().__typename, "Completed");
  const r = await gql(app, `query($id: ID!) { generation(id: $id) {
    m0: mosaic(index: 0, format: PNG) m1: mosaic(index: 1, format: PNG, size: 32) bad: mosaic(index: 2)
    latestPreviews { index tokensDone width } } }`, { id: g.id });
  assert.equal(r.errors?.[0]?.extensions?.code, "BAD_INPUT", "index 2 of 2 images");
  const gen = r.data.generation;
  assert.deepEqual(gen.latestPreviews, [], "the final images superseded the previews");
  const info = await loadModelInfo(MODEL_DIR);
  const a = info.manifest.architecture;
  const p = info.manifest.previews.codePatches!.patchSize;
  const row = await app.db.prisma.generation.findUnique({ where: { id: uuidOf(g.id) } });
  // The stored tokens hold the scene plan, where the model writes one, before the grid of codes.
  const grids = unpackCodes(row!.codes!, 2).map((tokens) => shape.codesOf(tokens));
  const expected = mosaic(grids[0]!, shape.imageCodes, info.codePatches!, { gridHeight: a.grid.height, gridWidth: a.grid.width, patchSize: p }, a.codebookSize);
  const png = Buffer.from(gen.m0.replace(/^data:image\/png;base64,/, ""), "base64");
  const { data, info: meta } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  assert.equal(meta.width, a.grid.width * p);
  assert.ok(Buffer.from(expected).equals(data), "the GraphQL mosaic is the engine's mosaic of the stored codes");
  const centre = ((meta.height / 2) * meta.width + meta.width / 2) * 3;
  assert.ok(data[centre]! > data[centre + 2]! + 60, "a red centre, as asked");
  assert.equal((await sharp(Buffer.from(gen.m1.split(",")[1], "base64")).metadata()).width, 32);
  // Progress.mosaic in a live stream: the mosaic of the codes so far.
  const live = await create(app, { prompt: "a small white square at the top, black background", seed: 3, previewInterval: 0 });
  const client = await import("graphql-sse").then((m) => m.createClient({ url: app.url! }));
  const mosaics: string[] = [];
  for await (const e of client.iterate({ query: `subscription($id: ID!) { generationEvents(id: $id) { __typename ... on Progress { tokensDone mosaic(size: 16) } } }`, variables: { id: live.id } })) {
    const ev = (e.data as Json).generationEvents;
    if (ev.__typename === "Progress") mosaics.push(ev.mosaic);
  }
  client.dispose();
  assert.ok(mosaics.length > 0 && mosaics.every((m) => m.startsWith("data:image/png;base64,")), "every progress event carries a mosaic");
});

test("invalid input gets a coded error and stores nothing", async () => {
  const count = async () => (await gql(app, `{ generations(first: 100) { edges { node { id } } } }`)).data.generations.edges.length;
  const before = await count();
  const bad: [Record<string, unknown>, string][] = [
    [{ prompt: "x", count: 0 }, "count"], [{ prompt: "x", count: 10 }, "count"], [{ prompt: "x", seed: -1 }, "seed"],
    [{ prompt: "x", topK: -3 }, "topK"], [{ prompt: "x", topP: 0 }, "topP"], [{ prompt: "x", temperature: -1 }, "temperature"],
    [{ prompt: "x", guidanceScale: 1000 }, "guidanceScale"], [{ prompt: "x", previewInterval: 999 }, "previewInterval"],
    [{ prompt: "x".repeat(3000) }, "prompt"], [{ prompt: "x", model: "dalle-mega" }, "unknown model"],
  ];
  for (const [input, word] of bad) {
    const r = await gql(app, `mutation($input: CreateGenerationInput!) { createGeneration(input: $input) { id } }`, { input });
    assert.equal(r.errors?.[0]?.extensions?.code, "BAD_INPUT", JSON.stringify(r));
    assert.ok(r.errors![0]!.message.includes(word), r.errors![0]!.message);
  }
  const typeError = await gql(app, `mutation { createGeneration(input: { prompt: 5 }) { id } }`);
  assert.ok(typeError.errors?.length);
  const unknown = await gql(app, `subscription { generationEvents(id: "bm9wZQ==") { __typename } }`);
  assert.ok(unknown.errors?.length);
  assert.equal(await count(), before);
  const health = await gql(app, `{ health { ok role } }`);
  assert.deepEqual(health.data.health, { ok: true, role: "all" }, "the server keeps serving");
});

test("queries: generations newest first with filters and cursors, node, models, health", async () => {
  for (const p of ["alpha red circle", "beta blue square", "gamma red triangle"]) await create(app, { prompt: p, seed: 1 });
  const page1 = await gql(app, `{ generations(first: 2, promptContains: "RED") { edges { cursor node { prompt } } pageInfo { hasNextPage endCursor } } }`);
  assert.deepEqual(page1.data.generations.edges.map((e: Json) => e.node.prompt), ["gamma red triangle", "alpha red circle"]);
  const all = await gql(app, `{ generations(first: 1) { edges { node { id prompt } } pageInfo { hasNextPage endCursor } } }`);
  assert.equal(all.data.generations.pageInfo.hasNextPage, true);
  const next = await gql(app, `query($after: String) { generations(first: 1, after: $after) { edges { node { prompt } } } }`, { after: all.data.generations.pageInfo.endCursor });
  assert.equal(next.data.generations.edges[0].node.prompt, "beta blue square");
  const completed = await gql(app, `{ generations(first: 100, status: [COMPLETED]) { edges { node { status } } } }`);
  assert.ok(completed.data.generations.edges.length >= 4, "earlier tests completed generations");
  assert.ok(completed.data.generations.edges.every((e: Json) => e.node.status === "COMPLETED"));
  const queuedOnes = await gql(app, `{ generations(first: 100, status: [QUEUED, CANCELLED]) { edges { node { status } } } }`);
  assert.ok(queuedOnes.data.generations.edges.every((e: Json) => ["QUEUED", "CANCELLED"].includes(e.node.status)));
  // Backwards: the last two of the "red" ones, and the page before a cursor.
  const back = await gql(app, `{ generations(last: 2, promptContains: "red") { edges { node { prompt } } pageInfo { hasPreviousPage startCursor } } }`);
  const backPrompts = back.data.generations.edges.map((e: Json) => e.node.prompt);
  assert.equal(backPrompts.length, 2);
  const reds = (await gql(app, `{ generations(first: 100, promptContains: "red") { edges { cursor node { prompt } } } }`)).data.generations.edges;
  assert.deepEqual(backPrompts, reds.slice(-2).map((e: Json) => e.node.prompt), "last: n is the end of the same order");
  assert.equal(back.data.generations.pageInfo.hasPreviousPage, reds.length > 2);
  const before = await gql(app, `query($c: String) { generations(last: 1, before: $c, promptContains: "red") { edges { node { prompt } } } }`, { c: reds[1].cursor });
  assert.deepEqual(before.data.generations.edges.map((e: Json) => e.node.prompt), [reds[0].node.prompt]);
  const badCursor = await gql(app, `{ generations(first: 1, after: "not a cursor") { edges { node { id } } } }`);
  assert.ok(badCursor.errors?.[0]?.extensions?.code, JSON.stringify(badCursor));
  const id = all.data.generations.edges[0].node.id;
  const node = await gql(app, `query($id: ID!) { node(id: $id) { id ... on Generation { prompt } } }`, { id });
  assert.equal(node.data.node.prompt, "gamma red triangle");
  const models = await gql(app, `{ models { name imageWidth tokensPerImage defaultPreviewInterval defaultGuidanceScale } }`);
  assert.equal(models.data.models[0].name, "mosaic-shapes");
  assert.equal(models.data.models[0].tokensPerImage, shape.sequenceLength);
  assert.equal(models.data.models[0].defaultPreviewInterval, shape.gridWidth);
});

test("promptContains searches for the text itself: % and _ are not wildcards", async () => {
  await create(app, { prompt: "delta 100% red_circle", seed: 1 });
  await create(app, { prompt: "delta 1000 redXcircle", seed: 1 });
  const search = async (text: string) => (await gql(app, `query($t: String) { generations(first: 100, promptContains: $t) { edges { node { prompt } } } }`, { t: text })).data.generations.edges.map((e: Json) => e.node.prompt);
  assert.deepEqual(await search("100%"), ["delta 100% red_circle"]);
  assert.deepEqual(await search("red_c"), ["delta 100% red_circle"]);
  assert.deepEqual(await search("%"), ["delta 100% red_circle"]);
  assert.deepEqual(await search("delta%red"), []);
  assert.deepEqual(await search("\\"), [], "a backslash is a character too");
});

test("schema.graphql is current, and every type and field has a description", async () => {
  const file = await readFile(path.join(PACKAGE_ROOT, "schema.graphql"), "utf8");
  assert.equal(file, printed(), "schema.graphql is stale: run npm run schema");
  assertValidSchema(schema);
  const missing: string[] = [];
  for (const t of Object.values(schema.getTypeMap())) {
    if (t.name.startsWith("__") || ["String", "Int", "Float", "Boolean", "ID"].includes(t.name)) continue;
    if (!t.description) missing.push(t.name);
    if (isObjectType(t) || isInterfaceType(t) || isInputObjectType(t)) {
      for (const f of Object.values(t.getFields())) {
        if (!f.description) missing.push(`${t.name}.${f.name}`);
        // graphql-schema-linter's descriptions-are-capitalized: the first character does not change when upper-cased.
        else if (f.description[0] !== f.description[0]!.toUpperCase()) missing.push(`${t.name}.${f.name} (starts in lower case)`);
        // Arguments are held to the same standard as fields.
        if ("args" in f) for (const a of f.args) if (!a.description) missing.push(`${t.name}.${f.name}(${a.name})`);
      }
    }
    if (isEnumType(t)) for (const v of t.getValues()) if (!v.description) missing.push(`${t.name}.${v.name}`);
    if (isUnionType(t) && !t.description) missing.push(t.name);
  }
  assert.deepEqual(missing, []);
});

test("GraphiQL is served with its scripts inline (works offline) and example operations", async () => {
  const res = await fetch(app.url!, { headers: { accept: "text/html" } });
  assert.equal(res.status, 200);
  const html = await res.text();
  assert.ok(html.length > 1_000_000, "the GraphiQL bundle is inlined");
  assert.doesNotMatch(html, /<script[^>]+src=["']https?:/i, "no script from a CDN");
  assert.ok(html.includes("createGeneration") && html.includes("generationEvents"), "example operations");
});

test("the page at / is the web app built at install (web/dist), same origin only", async () => {
  const res = await fetch(new URL("/", app.url!));
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type")!, /text\/html/);
  const html = await res.text();
  assert.match(html, /<div id="app"><\/div>/, "web/dist is built: npm install runs web/build.mjs (npm run build:web by hand)");
  assert.match(res.headers.get("content-security-policy")!, /default-src 'self'/);
  const script = /<script[^>]+src="(\/assets\/[^"]+\.js)"/.exec(html)?.[1];
  assert.ok(script, "the app's script is served from /assets");
  const js = await fetch(new URL(script, app.url!));
  assert.equal(js.status, 200);
  assert.match(js.headers.get("content-type")!, /javascript/);
});

test("promptCheck: unknown and truncated words, before anything is submitted", async () => {
  const q = `query($p: String!) { promptCheck(prompt: $p) { normalized unknownWords truncatedWords tokens maxTokens blank } }`;
  const r = (await gql(app, q, { p: "A red Zebra, on a purple unicorn!" })).data.promptCheck;
  assert.deepEqual(r.unknownWords, ["zebra", "unicorn"]);
  assert.deepEqual(r.truncatedWords, []);
  assert.equal(r.normalized, "a red zebra , on a purple unicorn");
  assert.equal(r.blank, false);
  const long = (await gql(app, q, { p: "red ".repeat(100) })).data.promptCheck;
  assert.equal(long.tokens, 102);
  assert.equal(long.truncatedWords.length, 102 - long.maxTokens);
  assert.ok(long.truncatedWords.every((w: string) => w === "red"));
  assert.equal((await gql(app, q, { p: "   " })).data.promptCheck.blank, true);
  assert.equal((await gql(app, q, { p: "a\u0000b" })).errors?.[0]?.extensions?.code, "BAD_INPUT");
  assert.equal((await gql(app, `{ promptCheck(prompt: "x", model: "nope") { blank } }`)).errors?.[0]?.extensions?.code, "BAD_INPUT");
  assert.equal(await app.db.prisma.generation.count({ where: { prompt: { contains: "unicorn" } } }), 0, "nothing stored");
});
