/**
 * The API under seeded-random hostile input, over HTTP (scripts/fuzz.ts) and graphql-ws
 * (scripts/fuzz-ws.ts): no 5xx, every error coded and none INTERNAL, no stack traces, file paths or
 * driver text in any body or message, refusals quick, sockets closed only with the protocol's codes,
 * the server still live afterwards, and its memory bounded (the server runs in this process).
 * `npm run fuzz -- --requests 10000 --ws 2000` runs the same fuzzers longer.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import WebSocket from "ws";
import { checkResponse, fuzz, RequestMaker, startFuzzServer, type FuzzRequest, type FuzzResponse, type FuzzServer } from "../scripts/fuzz.ts";
import { checkMessage, drawScripts, frameCause, fuzzWebSocket, WS_PROTOCOL, type SocketState, type WsFailure, type WsRule } from "../scripts/fuzz-ws.ts";
import { stopEmbedded } from "./server-helpers.ts";

let server: FuzzServer;

/** Memory of this process (server and fuzzers), after a collection when --expose-gc allows one. */
function memory(): NodeJS.MemoryUsage {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage();
}
const MiB = (n: number) => Math.round(n / 2 ** 20);
const mem: { start?: NodeJS.MemoryUsage; afterHttp?: NodeJS.MemoryUsage; afterWs?: NodeJS.MemoryUsage } = {};

before(async () => {
  server = await startFuzzServer();
  mem.start = memory();
});

after(async () => {
  await server?.close();
  await stopEmbedded();
});

/**
 * Its 2,000 requests include fragment "bombs" and malformed Host headers, besides the rest of the mix
 * (found by drawing requests, without sending, for seeds from 20261201 on); its 500 WebSocket messages
 * include messages over 64 KiB, a subscribe before connection_init, bad authorizations, a second
 * connection_init, duplicate ids, server-only message types and malformed subscribes.
 */
const SEED = 20261217;

test("2000 seeded hostile requests: no 5xx, every error coded, no internals, quick refusals, still live", { timeout: 600_000 }, async (t) => {
  const s = await fuzz({ url: server.url, requests: 2000, seed: SEED, concurrency: 4 });
  mem.afterHttp = memory();
  t.diagnostic(`HTTP: ${s.requests} requests in ${s.seconds} s, ${s.executed} executed, statuses ${JSON.stringify(s.byStatus)}, codes ${JSON.stringify(s.byCode)}`);
  assert.equal(s.requests, 2000);
  // The fuzzer reached the request parser, the limits, validation, execution and the picture routes.
  const codes = Object.keys(s.byCode);
  for (const code of ["BAD_REQUEST", "GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED", "QUERY_TOO_COMPLEX", "BAD_INPUT", "PAYLOAD_TOO_LARGE", "UNSUPPORTED_MEDIA_TYPE", "NOT_FOUND", "LENGTH_REQUIRED"]) {
    assert.ok(codes.includes(code), `never saw ${code}; saw ${JSON.stringify(s.byCode)}`);
  }
  assert.ok(codes.length >= 10, `only ${codes.length} distinct codes: ${JSON.stringify(s.byCode)}`);
  assert.ok(s.executed >= 200, `only ${s.executed} operations ran`);
  // One example of each kind of failure, and what the server logged (masked errors keep their detail there).
  const examples = s.failures.filter((f, i) => s.failures.findIndex((g) => g.rule === f.rule && g.kind === f.kind) === i);
  const report = JSON.stringify({ failuresByRule: s.failuresByRule, examples, serverLog: server.errors.slice(0, 10) }, null, 1);
  assert.equal(s.failureCount, 0, `${s.failureCount} failures:\n${report}`);
});


test("500 seeded hostile graphql-ws messages over about 20 sockets: coded errors, no internals, only the protocol's close codes, still live", { timeout: 600_000 }, async (t) => {
  const s = await fuzzWebSocket({ url: server.url, messages: 500, seed: SEED, connections: 20, keepPerRule: 100_000 });
  mem.afterWs = memory();
  t.diagnostic(`WebSocket: ${s.messages} messages over ${s.connections} sockets in ${s.seconds} s, ${s.executed} executed, close codes ${JSON.stringify(s.closeCodes)}, error codes ${JSON.stringify(s.errorCodes)}`);
  assert.ok(s.messages >= 500, `only ${s.messages} messages sent`);
  assert.ok(s.connections >= 20, `only ${s.connections} sockets`);
  // The mix reached the message parser, connection_init's checks, the size limit, validation and execution.
  for (const code of ["1000", "1009", "4400", "4401", "4403", "4429"]) assert.ok(code in s.closeCodes, `never closed with ${code}: ${JSON.stringify(s.closeCodes)}`);
  for (const code of ["GRAPHQL_VALIDATION_FAILED", "BAD_INPUT", "QUERY_TOO_COMPLEX"]) assert.ok(code in s.errorCodes, `never saw ${code}: ${JSON.stringify(s.errorCodes)}`);
  assert.ok(s.executed >= 20, `only ${s.executed} operations returned data`);
  assert.equal(s.failures.length, s.failureCount, "every failure is kept, to be classified");
  const examples = s.failures.filter((f, i) => s.failures.findIndex((g) => g.rule === f.rule && g.stepKind === f.stepKind) === i).slice(0, 10);
  assert.equal(s.failures.length, 0, `${s.failures.length} failures:\n${JSON.stringify({ failuresByRule: s.failuresByRule, examples, serverLog: server.errors.slice(0, 10) }, null, 1)}`);
});

test("the server's memory stays bounded over both runs (under 300 MB of growth)", (t) => {
  if (!mem.start || !mem.afterHttp || !mem.afterWs) {
    t.skip("needs both fuzz runs");
    return;
  }
  const line = (m: NodeJS.MemoryUsage) => `rss ${MiB(m.rss)} MiB, heap ${MiB(m.heapUsed)} MiB, external ${MiB(m.external)} MiB`;
  t.diagnostic(`gc ${"gc" in globalThis ? "forced" : "not exposed (figures without a collection)"}`);
  t.diagnostic(`before: ${line(mem.start)}`);
  t.diagnostic(`after HTTP: ${line(mem.afterHttp)}`);
  t.diagnostic(`after WebSocket: ${line(mem.afterWs)}`);
  const growth = mem.afterWs.rss - mem.start.rss;
  t.diagnostic(`rss growth: ${MiB(growth)} MiB`);
  assert.ok(growth < 300 * 2 ** 20, `rss grew by ${MiB(growth)} MiB`);
});

test("the same seed draws the same requests and the same WebSocket scripts", () => {
  const a = new RequestMaker(SEED);
  const b = new RequestMaker(SEED);
  for (let i = 0; i < 300; i++) assert.deepEqual(a.make(i), b.make(i));
  assert.notDeepEqual(new RequestMaker(SEED + 1).make(0), new RequestMaker(SEED).make(0));
  const scripts = drawScripts({ seed: SEED, messages: 500, connections: 20 });
  assert.deepEqual(drawScripts({ seed: SEED, messages: 500, connections: 20 }), scripts);
  assert.equal(scripts.reduce((n, s) => n + s.frames, 0), 500);
  assert.notDeepEqual(drawScripts({ seed: SEED + 1, messages: 500, connections: 20 }), scripts);
});

test("the checks report what they must (and not echoed input)", () => {
  const req: FuzzRequest = { kind: "query", method: "POST", path: "/graphql", headers: { "content-type": "application/json" }, body: '{"query":"{ health { ok } }"}' };
  const res = (status: number, body: string, type = "application/json", ms = 5): FuzzResponse => ({ status, headers: { "content-type": type }, body: Buffer.from(body), ms });
  const rules = (r: FuzzResponse, q: FuzzRequest = req) => checkResponse(q, r).problems.map((p) => p.rule).sort();
  assert.deepEqual(rules(res(200, '{"data":{"health":{"ok":true}}}')), []);
  assert.deepEqual(rules(res(400, '{"errors":[{"message":"x","extensions":{"code":"BAD_REQUEST"}}]}')), []);
  assert.deepEqual(rules(res(500, '{"errors":[{"message":"x","extensions":{"code":"BAD_REQUEST"}}]}')), ["5xx"]);
  assert.deepEqual(rules(res(400, '{"errors":[{"message":"Variable \\"$a\\" was not provided."}]}')), ["uncoded-error"]);
  assert.deepEqual(rules(res(200, '{"errors":[{"message":"internal error","extensions":{"code":"INTERNAL"}}],"data":null}')), ["internal"]);
  assert.deepEqual(rules(res(200, "TypeError: x\n    at f (/work/main/node_modules/a.js:1:1)", "text/plain")), ["leak", "leak", "leak"]);
  assert.deepEqual(rules(res(200, '{"errors":[{"message":"Invalid `prisma.generation.findMany()`","extensions":{"code":"BAD_INPUT"}}],"data":null}')), ["leak"]);
  assert.deepEqual(rules(res(200, ':\n\nevent: next\ndata: {"errors":[{"message":"x"}]}\n\n', "text/event-stream")), ["uncoded-error"]);
  assert.deepEqual(rules(res(200, '{"errors":[{"message":"x","extensions":{"code":"QUERY_TOO_COMPLEX"}}]}', "application/json", 9000)), ["slow-refusal"]);
  assert.deepEqual(rules({ status: "timeout", headers: {}, body: Buffer.alloc(0), ms: 20_000 }), ["no-answer"]);
  // Input echoed back is not a leak: the request carried the text.
  const echo: FuzzRequest = { ...req, body: '{"query":"{ generations(promptContains: \\"postgres\\") { edges { cursor } } }"}' };
  assert.deepEqual(rules(res(200, '{"errors":[{"message":"unknown \\"postgres\\"","extensions":{"code":"BAD_INPUT"}}],"data":null}'), echo), []);
  // A static page may name its bundle's build paths.
  assert.deepEqual(rules(res(200, "<html>// ../../node_modules/x</html>", "text/html")), []);
});

test("the WebSocket checks report what they must (and not echoed input)", () => {
  const rules = (messages: string[], sentText = "") => {
    const state: SocketState = { sentText, acked: false, pongs: 0, ops: new Map([["1", { kind: "query", pending: 1, state: "open" }]]) };
    const found: WsRule[] = [];
    const summary = { received: {}, errorCodes: {}, executed: 0 };
    for (const m of messages) checkMessage(m, state, { allowInternal: false, summary }, (rule) => found.push(rule));
    return found.sort();
  };
  assert.deepEqual(rules(['{"type":"connection_ack"}', '{"id":"1","type":"next","payload":{"data":{"health":{"ok":true}}}}', '{"id":"1","type":"complete"}']), []);
  assert.deepEqual(rules(['{"id":"1","type":"error","payload":[{"message":"x","extensions":{"code":"GRAPHQL_PARSE_FAILED"}}]}']), []);
  assert.deepEqual(rules(['{"id":"1","type":"error","payload":[{"message":"Unable to identify operation"}]}']), ["uncoded-error"]);
  assert.deepEqual(rules(['{"id":"1","type":"error","payload":[]}']), ["uncoded-error"]);
  assert.deepEqual(rules(['{"id":"1","type":"next","payload":{"data":null,"errors":[{"message":"internal error","extensions":{"code":"INTERNAL"}}]}}']), ["internal"]);
  assert.deepEqual(rules(['{"id":"1","type":"error","payload":[{"message":"at /work/main/src/x.ts:1","extensions":{"code":"BAD_INPUT"}}]}']), ["leak", "leak"]);
  assert.deepEqual(rules(['{"id":"2","type":"next","payload":{}}', '{"type":"data"}', "not json"]), ["protocol", "protocol", "protocol"]);
  assert.deepEqual(rules(['{"id":"1","type":"complete"}', '{"id":"1","type":"next","payload":{"data":{}}}']), ["protocol"]);
  assert.deepEqual(rules(['{"type":"connection_ack"}', '{"type":"connection_ack"}']), ["protocol"]);
  // Input echoed back is not a leak.
  assert.deepEqual(rules(['{"id":"1","type":"error","payload":[{"message":"unknown \\"postgres\\"","extensions":{"code":"BAD_INPUT"}}]}'], '{"query":"{ x(s: \\"postgres\\") }"}'), []);
  // What a close is blamed on.
  assert.equal(frameCause({ data: JSON.stringify({ type: "subscribe", id: "1", payload: { query: "{ health { ok " } }) }), "query-does-not-parse");
  assert.equal(frameCause({ data: JSON.stringify({ type: "subscribe", id: "1", payload: { query: `{ ${"__typename ".repeat(2100)}}` } }) }), "query-does-not-parse");
  assert.equal(frameCause({ data: JSON.stringify({ type: "subscribe", id: "1", payload: { query: "query A { a } query B { b }" } }) }), "operation-not-identified");
  assert.equal(frameCause({ data: JSON.stringify({ type: "subscribe", id: "1", payload: { query: "{ health { ok } }" } }) }), undefined);
  assert.equal(frameCause({ data: JSON.stringify({ type: "next", id: "1", payload: {} }) }), "server-only-type");
});

// ---------------------------------------------------------------------------------------------------
// The server bugs the WebSocket fuzzer found (fixed in src/graphql/server.ts), one message sequence each

type Message = { type: string; id?: string; payload?: unknown };

/** A graphql-ws socket that has been acknowledged, with what it received and how it closed. */
async function acknowledgedSocket(): Promise<{ ws: WebSocket; messages: Message[]; closed: Promise<number>; next: (pred: (m: Message) => boolean, ms?: number) => Promise<Message | undefined> }> {
  const ws = new WebSocket(new URL("/graphql", server.url).toString().replace(/^http/, "ws"), WS_PROTOCOL);
  const messages: Message[] = [];
  const waiters: (() => void)[] = [];
  ws.on("message", (d) => {
    messages.push(JSON.parse(String(d)) as Message);
    for (const w of waiters.splice(0)) w();
  });
  ws.on("error", () => undefined);
  const closed = new Promise<number>((resolve) => ws.on("close", (code) => {
    resolve(code);
    for (const w of waiters.splice(0)) w();
  }));
  let isClosed = false;
  void closed.then(() => (isClosed = true));
  const next = async (pred: (m: Message) => boolean, ms = 5000): Promise<Message | undefined> => {
    const end = Date.now() + ms;
    for (;;) {
      const m = messages.find(pred);
      if (m || isClosed || Date.now() > end) return m;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100);
        waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  };
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  ws.send(JSON.stringify({ type: "connection_init" }));
  assert.ok(await next((m) => m.type === "connection_ack"), "no connection_ack");
  return { ws, messages, closed, next };
}

const codeOf = (m: Message | undefined) => (m?.payload as { extensions?: { code?: string } }[] | undefined)?.[0]?.extensions?.code;

test("graphql-ws: a subscribe whose document does not parse is an error message (GRAPHQL_PARSE_FAILED), and the socket stays open", async () => {
  // connection_init → connection_ack; subscribe {id: "1", query: "{ health { ok "} → today: close 4500 "Syntax Error: Expected Name, found <EOF>."
  for (const query of ["{ health { ok ", `{ ${"__typename ".repeat(2100)}}`]) {
    const s = await acknowledgedSocket();
    try {
      s.ws.send(JSON.stringify({ type: "subscribe", id: "1", payload: { query } }));
      const error = await s.next((m) => m.id === "1");
      assert.equal(error?.type, "error", `got ${JSON.stringify(error)}; socket ${s.ws.readyState === WebSocket.OPEN ? "open" : "closed"}`);
      assert.equal(codeOf(error), "GRAPHQL_PARSE_FAILED");
      s.ws.send(JSON.stringify({ type: "subscribe", id: "2", payload: { query: "{ health { ok } }" } }));
      assert.equal((await s.next((m) => m.id === "2" && m.type === "complete"))?.type, "complete", "the socket still runs operations");
    } finally {
      s.ws.close();
    }
  }
});

test("graphql-ws: a document whose operation cannot be chosen is an error with a code", async () => {
  // connection_init → connection_ack; subscribe {id: "1", query: "query A { health { ok } } query B { models { name } }"}
  // → today: {"id":"1","type":"error","payload":[{"message":"Unable to identify operation"}]}
  for (const payload of [{ query: "query A { health { ok } } query B { models { name } }" }, { query: "{ health { ok } }", operationName: "Q" }]) {
    const s = await acknowledgedSocket();
    try {
      s.ws.send(JSON.stringify({ type: "subscribe", id: "1", payload }));
      const error = await s.next((m) => m.id === "1");
      assert.equal(error?.type, "error", JSON.stringify(error));
      assert.equal(typeof codeOf(error), "string", `no code: ${JSON.stringify(error)}`);
    } finally {
      s.ws.close();
    }
  }
});

test("graphql-ws: a message type only a server sends closes the socket with 4400, not 4500", async () => {
  // connection_init → connection_ack; {"type":"next","id":"1","payload":{}} → today: close 4500 "Unexpected message of type next received"
  for (const message of [{ type: "next", id: "1", payload: {} }, { type: "error", id: "1", payload: [{ message: "x" }] }, { type: "connection_ack" }]) {
    const s = await acknowledgedSocket();
    s.ws.send(JSON.stringify(message));
    assert.equal(await s.closed, 4400, JSON.stringify(message));
  }
});
