/**
 * A seeded fuzzer for the HTTP API: hostile requests to a running server's /graphql (and a few to
 * /images/…, /previews/…, / and the probes), each checked for what docs/security.md promises: no 5xx,
 * coded errors and none INTERNAL, no leaks, quick refusals, a server still live at the end (the rules:
 * scripts/fuzz/checks.ts; what is drawn: scripts/fuzz/requests.ts). A failure is reproduced by its seed
 * and index (`--only i`). With `--ws n`, n graphql-ws messages follow (scripts/fuzz-ws.ts).
 *
 *   npm run fuzz -- --requests 10000 [--seed N] [--url http://host:port] [--concurrency 4] [--only i,j]
 *                   [--authorization "Bearer <key>"] [--allow-internal] [--timeout-ms 20000] [--ws 500]
 *
 * Without --url it starts its own server ("all": API and worker) on a fresh test database (DATABASE_URL's
 * server, else the PostgreSQL at 127.0.0.1:5432/test when it answers, else an embedded one), with one
 * finished generation so that real images, previews, ids and cursors exist, and stops it at the end.
 * It prints the summary as JSON and exits 1 when there were failures.
 *
 * This file is the CLI; the fuzzer is in scripts/fuzz/, and re-exported here.
 */
import { parseArgs } from "node:util";
import { fuzz } from "./fuzz/run.ts";
import { defaultDatabaseServer, startFuzzServer, type FuzzServer } from "./fuzz/server.ts";

export { Rng } from "./fuzz/rng.ts";
export { globalId, hostileString, NO_IDS, unicodeChar, type KnownIds } from "./fuzz/values.ts";
export { Doc, gqlString, loadSchema, SCHEMA_FILE, wrongJson } from "./fuzz/documents.ts";
export { createBudget, KINDS, RequestMaker, type FuzzRequest } from "./fuzz/requests.ts";
export type { FuzzResponse } from "./fuzz/transport.ts";
export { checkResponse, NEEDLES, type CheckOptions, type Rule, type Verdict } from "./fuzz/checks.ts";
export { fuzz, knownIds, live, urls, type FuzzFailure, type FuzzOptions, type FuzzSummary } from "./fuzz/run.ts";
export { startFuzzServer, type FuzzServer } from "./fuzz/server.ts";

// ---------------------------------------------------------------------------------------------------
// CLI

// Run after this module has finished loading (not in a top-level await): a module that imports this one
// while the CLI runs (the CLI imports scripts/fuzz-ws.ts) would otherwise wait for the CLI to end.
if (import.meta.url === `file://${process.argv[1]}`) setImmediate(() => void cli());

async function cli(): Promise<never> {
  const { values } = parseArgs({
    options: {
      requests: { type: "string", default: "1000" }, seed: { type: "string" }, url: { type: "string" }, concurrency: { type: "string", default: "4" },
      only: { type: "string" }, "allow-internal": { type: "boolean", default: false }, "timeout-ms": { type: "string" }, authorization: { type: "string" },
      ws: { type: "string" },
    },
  });
  const num = (name: string, v: string | undefined) => {
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a whole number (got ${v})`);
    return n;
  };
  const requests = num("requests", values.requests);
  const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : num("seed", values.seed);
  const only = values.only?.split(",").map((s) => num("only", s));
  const wsMessages = values.ws === undefined ? undefined : num("ws", values.ws);
  let server: FuzzServer | null = null;
  let code = 0;
  try {
    if (!values.url) {
      process.stderr.write("fuzz: starting a server on a fresh test database…\n");
      server = await startFuzzServer({ database: await defaultDatabaseServer() });
    }
    const url = values.url ?? server!.url;
    process.stderr.write(`fuzz: ${requests} requests to ${url} (seed ${seed})\n`);
    const summary = await fuzz({
      url, requests, seed, concurrency: num("concurrency", values.concurrency), only, allowInternal: values["allow-internal"], authorization: values.authorization,
      timeoutMs: values["timeout-ms"] ? num("timeout-ms", values["timeout-ms"]) : undefined, keepPerRule: only ? 1000 : undefined,
    });
    // --ws n: then n graphql-ws messages to the same server (scripts/fuzz-ws.ts), same seed.
    let ws: Awaited<ReturnType<typeof import("./fuzz-ws.ts").fuzzWebSocket>> | undefined;
    if (wsMessages !== undefined) {
      process.stderr.write(`fuzz: ${wsMessages} WebSocket messages to ${url} (seed ${seed})\n`);
      ws = await (await import("./fuzz-ws.ts")).fuzzWebSocket({ url, messages: wsMessages, seed, allowInternal: values["allow-internal"], authorization: values.authorization });
    }
    const out = { ...summary, ...(ws ? { ws } : {}), ...(server ? { serverLog: { errorLines: server.errorCount(), first: server.errors.slice(0, 20) } } : {}) };
    console.log(JSON.stringify(out, null, 1));
    code = summary.failureCount || ws?.failureCount ? 1 : 0;
  } finally {
    await server?.close();
    if (server) await (await import("../test/server-helpers.ts")).stopEmbedded();
  }
  process.exit(code);
}
