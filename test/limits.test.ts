/**
 * Abuse refused before it costs anything: the requests that killed or stalled the API before
 * (1000 aliases of image data, encoded images at 2048 px, 10,000 nested braces, oversized bodies,
 * NUL in a prompt, bad variables) each get a coded 4xx quickly, and the server keeps serving.
 */
import assert from "node:assert/strict";
import { after, before, mock, test } from "node:test";
import WebSocket from "ws";
import type { App } from "../src/app.ts";
import { MAX_BODY_BYTES } from "../src/graphql/limits.ts";
import type { Json } from "./helpers.ts";
import { create, createTestDatabase, eventsOverSse, gql, startTestApp, stopEmbedded, type TestDatabase } from "./server-helpers.ts";

let db: TestDatabase;
let app: App;

before(async () => {
  db = await createTestDatabase();
  app = await startTestApp(db.url, "all");
  const g = await create(app, { prompt: "a big red circle in the centre, blue background", seed: 1, previewInterval: 0 });
  await eventsOverSse(app, g.id);
});

after(async () => {
  await app?.close();
  await db?.drop();
  await stopEmbedded();
});

async function post(body: string, headers: Record<string, string> = {}): Promise<{ status: number; json: Json; ms: number }> {
  const t0 = performance.now();
  // A client that speaks GraphQL over HTTP (graphql-response+json) gets the request's real status.
  const res = await fetch(app.url!, { method: "POST", headers: { "content-type": "application/json", accept: "application/graphql-response+json", ...headers }, body });
  const text = await res.text();
  let json: Json = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = { raw: text };
  }
  return { status: res.status, json, ms: performance.now() - t0 };
}

const codeOf = (r: { json: Json }) => r.json?.errors?.[0]?.extensions?.code;

test("1000 aliases of image data are refused before running, in milliseconds", async () => {
  const aliases = (n: number) => Array.from({ length: n }, (_, i) => `a${i}: generations(first: 100) { edges { node { images { dataUrl } } } }`).join(" ");
  // The issue's 72 KB request: over the body limit.
  const r = await post(JSON.stringify({ query: `{ ${aliases(1000)} }` }));
  assert.equal(r.status, 413);
  assert.equal(codeOf(r), "PAYLOAD_TOO_LARGE");
  assert.ok(r.ms < 50, `answered in ${r.ms.toFixed(0)} ms`);
  // Under the body limit, the alias limit refuses it.
  const under = await post(JSON.stringify({ query: `{ ${aliases(500)} }` }));
  assert.ok(under.status >= 400 && under.status < 500, `status ${under.status}`);
  // 500 aliases are over the token limit: the parser stops first (yoga's code for that).
  assert.equal(codeOf(under), "GRAPHQL_PARSE_FAILED", JSON.stringify(under.json).slice(0, 300));
  assert.match(under.json.errors[0].message, /Token limit of 2000 exceeded/);
  const fewer = await post(JSON.stringify({ query: `{ ${Array.from({ length: 30 }, (_, i) => `a${i}: health { ok }`).join(" ")} }` }));
  assert.equal(fewer.status, 400, "30 aliases: over the alias limit, refused with 400 whatever the Accept header");
  assert.equal(codeOf(fewer), "QUERY_TOO_COMPLEX");
  assert.ok(under.ms < 200, `answered in ${under.ms.toFixed(0)} ms`);
});

test("a few aliases of costly fields are refused by the cost limit; a normal query passes", async () => {
  const five = Array.from({ length: 5 }, (_, i) => `w${i}: dataUrl(format: WEBP)`).join(" ");
  const r = await post(JSON.stringify({ query: `{ generations(first: 100) { edges { node { images { ${five} } } } } }` }));
  assert.equal(codeOf(r), "QUERY_TOO_COMPLEX", JSON.stringify(r.json).slice(0, 300));
  assert.match(r.json.errors[0].message, /cost \d+ is over the limit/);
  // The issue's 568-byte request (5 aliases of a 2048-px smooth WebP of every image of 100 generations),
  // which cost 93 CPU-s before: refused before anything runs.
  const issue = Array.from({ length: 5 }, (_, i) => `w${i}: dataUrl(format: WEBP, size: 2048, upscale: SMOOTH)`).join(" ");
  const refused = await post(JSON.stringify({ query: `{ generations(first: 100) { edges { node { images { ${issue} } } } } }` }));
  assert.equal(codeOf(refused), "QUERY_TOO_COMPLEX");
  assert.ok(refused.ms < 50, `answered in ${refused.ms.toFixed(0)} ms`);
  const ok = await post(JSON.stringify({ query: `{ generations(first: 10) { edges { node { prompt images { url(size: 256) } } } } }` }));
  assert.equal(ok.status, 200);
  assert.ok(!ok.json.errors, JSON.stringify(ok.json.errors));
  assert.equal(ok.json.data.generations.edges.length, 1);
});

test("the cost limit counts variables and their defaults, over HTTP and graphql-ws", async () => {
  // The probe's 421-byte request: first: $n with n = 100 counted as the default page of 20, and ran 59 s.
  const mosaics = Array.from({ length: 10 }, (_, i) => `m${i}: mosaic(size: ${1024 - i}, format: WEBP)`).join(" ");
  const query = `query($n: Int) { generations(first: $n) { edges { node { ${mosaics} } } } }`;
  const r = await post(JSON.stringify({ query, variables: { n: 100 } }));
  assert.equal(codeOf(r), "QUERY_TOO_COMPLEX", JSON.stringify(r.json).slice(0, 300));
  assert.equal(r.status, 400);
  assert.ok(r.ms < 200, `answered in ${r.ms.toFixed(0)} ms`);
  const byDefault = await post(JSON.stringify({ query: query.replace("$n: Int", "$n: Int = 100") }));
  assert.equal(codeOf(byDefault), "QUERY_TOO_COMPLEX", "a variable's default counts when the request leaves it out");
  const small = await post(JSON.stringify({ query: `query($n: Int) { generations(first: $n) { edges { node { prompt } } } }`, variables: { n: 2 } }));
  assert.ok(!small.json.errors, JSON.stringify(small.json.errors));
  // The same request over graphql-ws is refused too.
  const ws = new WebSocket(app.url!.replace(/^http/, "ws"), "graphql-transport-ws");
  await new Promise((resolve) => ws.on("open", resolve));
  ws.send(JSON.stringify({ type: "connection_init" }));
  await new Promise((resolve) => ws.once("message", resolve));
  const answer = new Promise<Json>((resolve) => ws.on("message", (m) => resolve(JSON.parse(String(m)))));
  ws.send(JSON.stringify({ id: "1", type: "subscribe", payload: { query, variables: { n: 100 } } }));
  const m = await answer;
  ws.close();
  const errors = m.type === "error" ? m.payload : m.payload?.errors;
  assert.equal(errors?.[0]?.extensions?.code, "QUERY_TOO_COMPLEX", JSON.stringify(m).slice(0, 300));
});

test("only /graphql itself takes GraphQL: a trailing slash does not get around the content-type and body checks", async () => {
  const base = new URL(app.url!).origin;
  const form = await fetch(`${base}/graphql/`, {
    method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ query: `mutation { createGeneration(input: { prompt: "a cross-site form" }) { id } }` }),
  });
  assert.equal(form.status, 404);
  assert.equal((await form.json()).errors[0].extensions.code, "NOT_FOUND");
  assert.equal((await fetch(`${base}/graphql/?query=${encodeURIComponent("{ health { ok } }")}`)).status, 404);
  assert.equal((await fetch(`${base}/graphql`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "query=x" })).status, 415);
  const created = await gql(app, `{ generations(first: 100, promptContains: "cross-site") { edges { node { id } } } }`);
  assert.equal(created.data.generations.edges.length, 0, "no generation was created");
});

test("sizes over 1024 are refused (BAD_INPUT, or 400 on the image route)", async () => {
  const r = await gql(app, `{ generations(first: 1) { edges { node { images { dataUrl(format: WEBP, size: 2048, upscale: SMOOTH) } } } } }`);
  assert.equal(r.errors?.[0]?.extensions?.code, "BAD_INPUT");
  const url = (await gql(app, `{ generations(first: 1) { edges { node { images { url } } } } }`)).data.generations.edges[0].node.images[0].url;
  const sized = (n: number) => {
    const u = new URL(url);
    u.searchParams.set("size", String(n));
    return u;
  };
  assert.equal((await fetch(sized(2048))).status, 400);
  assert.equal((await fetch(sized(1024))).status, 200);
});

test("deep nesting, long documents and many directives are coded 4xx, not a crash", async () => {
  const nested = await post(JSON.stringify({ query: "{".repeat(10_000) + "}".repeat(10_000) }));
  assert.ok(nested.status >= 400 && nested.status < 500, `status ${nested.status}`);
  assert.ok(codeOf(nested), JSON.stringify(nested.json).slice(0, 300));
  let chain = "name";
  for (let i = 0; i < 14; i++) chain = `ofType { ${chain} }`;
  const tooDeep = await post(JSON.stringify({ query: `{ __type(name: "Generation") { fields { type { ${chain} } } } }` }));
  assert.equal(codeOf(tooDeep), "QUERY_TOO_COMPLEX", JSON.stringify(tooDeep.json).slice(0, 300));
  assert.match(tooDeep.json.errors[0].message, /depth limit of 12/);
  assert.equal(tooDeep.status, 400);
  const directives = await post(JSON.stringify({ query: `{ health ${"@skip(if: false) ".repeat(50)} { ok } }` }));
  assert.equal(codeOf(directives), "QUERY_TOO_COMPLEX");
  const health = await gql(app, "{ health { ok } }");
  assert.equal(health.data.health.ok, true, "still serving");
});

test("bodies over 64 KiB get 413 and chunked bodies 411, before they are read; big graphql-ws messages close the socket", async () => {
  const big = await post(JSON.stringify({ query: "{ health { ok } }", variables: { pad: "x".repeat(MAX_BODY_BYTES) } }));
  assert.equal(big.status, 413);
  assert.equal(codeOf(big), "PAYLOAD_TOO_LARGE");
  const chunked = await fetch(app.url!, {
    method: "POST", headers: { "content-type": "application/json" }, duplex: "half",
    body: new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode('{"query":"{ health { ok } }"}')); c.close(); } }),
  } as RequestInit);
  assert.equal(chunked.status, 411);
  const ws = new WebSocket(app.url!.replace(/^http/, "ws"), "graphql-transport-ws");
  await new Promise((r) => ws.on("open", r));
  const closed = new Promise<number>((r) => ws.on("close", (code) => r(code)));
  // graphql-ws wrote a plain-text stack to stderr (console.error) for each such message.
  const consoleError = mock.method(console, "error", () => {});
  try {
    ws.send(JSON.stringify({ type: "connection_init", payload: { pad: "x".repeat(MAX_BODY_BYTES + 1) } }));
    assert.equal(await closed, 1009);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(consoleError.mock.callCount(), 0, "nothing on stderr outside the log");
  } finally {
    consoleError.mock.restore();
  }
});

test("a prompt with NUL or other control characters is BAD_INPUT and nothing is stored", async () => {
  const before = (await gql(app, `{ generations(first: 100) { edges { node { id } } } }`)).data.generations.edges.length;
  for (const prompt of ["a red\u0000circle", "bell\u0007", "esc\u001b[31m", "lone \ud800 high", "lone \udc00 low"]) {
    const r = await gql(app, `mutation($p: String!) { createGeneration(input: { prompt: $p }) { id } }`, { p: prompt });
    assert.equal(r.errors?.[0]?.extensions?.code, "BAD_INPUT", JSON.stringify(r));
  }
  const ok = await gql(app, `mutation($p: String!) { createGeneration(input: { prompt: $p }) { id } }`, { p: "a red circle\non a blue\tbackground" });
  assert.ok(!ok.errors, "tabs and newlines are fine");
  // The limit counts characters as people do: 2000 emoji are 2000 characters (4000 UTF-16 units).
  const emoji = await gql(app, `mutation($p: String!) { createGeneration(input: { prompt: $p }) { id } }`, { p: "\u{1F534}".repeat(2000) });
  assert.ok(!emoji.errors, JSON.stringify(emoji.errors));
  const over = await gql(app, `mutation($p: String!) { createGeneration(input: { prompt: $p }) { id } }`, { p: "\u{1F534}".repeat(2001) });
  assert.equal(over.errors?.[0]?.extensions?.code, "BAD_INPUT");
  const after = (await gql(app, `{ generations(first: 100) { edges { node { id } } } }`)).data.generations.edges.length;
  assert.equal(after, before + 2);
});

test("bad variables JSON on GET and a wrong content type are 4xx with a code", async () => {
  const get = await fetch(`${app.url}?query=${encodeURIComponent("query($a: Int) { health { ok } }")}&variables=${encodeURIComponent("{not json")}`, { headers: { accept: "application/graphql-response+json" } });
  assert.ok(get.status >= 400 && get.status < 500, `status ${get.status}`);
  const body = (await get.json()) as Json;
  assert.ok(body.errors?.[0]?.message, JSON.stringify(body));
  const garbage = await post("{not json");
  assert.ok(garbage.status >= 400 && garbage.status < 500, `status ${garbage.status}`);
  // A body that is not JSON: 400 with a code, not the parser's own text with the body quoted back.
  const secret = "x".repeat(5_000);
  for (const accept of ["application/json", "application/graphql-response+json"]) {
    const res = await fetch(app.url!, { method: "POST", headers: { "content-type": "application/json", accept }, body: `{"query": "${secret}` });
    const text = await res.text();
    assert.equal(res.status, 400, accept);
    assert.equal(JSON.parse(text).errors[0].extensions.code, "BAD_REQUEST");
    assert.ok(!text.includes("originalError") && !text.includes(secret) && text.length < 300, text.slice(0, 300));
  }
});

test("CORS: a foreign origin is not reflected and cannot open a socket; a listed one works; form posts cannot run operations", async () => {
  const evil = "https://evil.example";
  const preflight = await fetch(app.url!, { method: "OPTIONS", headers: { origin: evil, "access-control-request-method": "POST", "access-control-request-headers": "content-type" } });
  assert.notEqual(preflight.headers.get("access-control-allow-origin"), evil);
  assert.equal(preflight.headers.get("access-control-allow-credentials"), null);
  for (const [type, body] of [["application/x-www-form-urlencoded", "query=mutation%20%7B%20createGeneration(input%3A%20%7Bprompt%3A%20%22x%22%7D)%20%7B%20id%20%7D%20%7D"], ["text/plain", '{"query":"mutation { createGeneration(input: {prompt: \\"x\\"}) { id } }"}']]) {
    const r = await fetch(app.url!, { method: "POST", headers: { "content-type": type!, origin: evil }, body });
    assert.equal(r.status, 415, type);
    assert.equal(((await r.json()) as Json).errors[0].extensions.code, "UNSUPPORTED_MEDIA_TYPE");
  }
  const refused = await new Promise<number | string>((resolve) => {
    const ws = new WebSocket(app.url!.replace(/^http/, "ws"), "graphql-transport-ws", { origin: evil });
    ws.on("open", () => { ws.close(); resolve("open"); });
    ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
    ws.on("error", () => resolve("error"));
  });
  assert.notEqual(refused, "open", "a socket from a foreign origin is refused");
  const own = new WebSocket(app.url!.replace(/^http/, "ws"), "graphql-transport-ws", { origin: new URL(app.url!).origin });
  await new Promise((resolve, reject) => { own.on("open", resolve); own.on("error", reject); });
  own.close();

  const friendly = "https://app.example.com";
  const listed = await startTestApp(db.url, "api", { corsOrigins: [friendly] });
  try {
    const ok = await fetch(listed.url!, { method: "OPTIONS", headers: { origin: friendly, "access-control-request-method": "POST", "access-control-request-headers": "content-type" } });
    assert.equal(ok.headers.get("access-control-allow-origin"), friendly);
    const other = await fetch(listed.url!, { method: "OPTIONS", headers: { origin: evil, "access-control-request-method": "POST" } });
    assert.notEqual(other.headers.get("access-control-allow-origin"), evil);
    const ws = new WebSocket(listed.url!.replace(/^http/, "ws"), "graphql-transport-ws", { origin: friendly });
    await new Promise((resolve, reject) => { ws.on("open", resolve); ws.on("error", reject); });
    ws.close();
  } finally {
    await listed.close();
  }
});

test("X-Forwarded-* headers are ignored unless the proxy is trusted, and checked when it is", async () => {
  const query = `{ generations(first: 1, status: [COMPLETED]) { edges { node { images { url } } } } }`;
  const urlWith = async (a: App, headers: Record<string, string>) => {
    const res = await fetch(a.url!, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify({ query }) });
    return ((await res.json()) as Json).data.generations.edges[0].node.images[0].url as string;
  };
  const own = new URL(app.url!).host;
  assert.ok((await urlWith(app, { "x-forwarded-host": "evil.example", "x-forwarded-proto": "https" })).startsWith(`http://${own}/images/`), "not trusted by default");
  const behind = await startTestApp(db.url, "api", { trustProxy: true });
  try {
    assert.ok((await urlWith(behind, { "x-forwarded-host": "mosaic.example.com", "x-forwarded-proto": "https" })).startsWith("https://mosaic.example.com/images/"));
    for (const [h, p] of [["evil.example/x?", "https"], ["mosaic.example.com", "javascript"], ["a b", "http"]]) {
      assert.ok((await urlWith(behind, { "x-forwarded-host": h!, "x-forwarded-proto": p! })).startsWith("/images/"), `${h} ${p}: URLs stay relative`);
    }
  } finally {
    await behind.close();
  }
  // MOSAIC_PUBLIC_URL: the operator names the address; neither Host nor X-Forwarded-Host moves it.
  const fixed = await startTestApp(db.url, "api", { trustProxy: true, publicUrl: "https://pics.example.com/mosaic/" }); // a trailing slash, as code may pass it
  try {
    for (const headers of [{}, { host: "evil.example" }, { "x-forwarded-host": "evil.example", "x-forwarded-proto": "http" }] as Record<string, string>[]) {
      const url = await urlWith(fixed, headers);
      assert.ok(url.startsWith("https://pics.example.com/mosaic/images/"), `${JSON.stringify(headers)}: ${url}`);
    }
  } finally {
    await fixed.close();
  }
});

test("MOSAIC_GRAPHIQL off: no GraphiQL page and no introspection; the API still works", async () => {
  const closed = await startTestApp(db.url, "api", { graphiql: false });
  try {
    const page = await fetch(closed.url!, { headers: { accept: "text/html" } });
    assert.doesNotMatch(await page.text(), /graphiql/i);
    const intro = await gql(closed, `{ __schema { types { name } } }`);
    assert.ok(intro.errors?.length, "introspection is refused");
    assert.equal(intro.data ?? null, null);
    assert.equal((await gql(closed, `{ health { ok } }`)).data.health.ok, true);
    assert.ok(!(await gql(app, `{ __schema { queryType { name } } }`)).errors, "on by default");
  } finally {
    await closed.close();
  }
});
