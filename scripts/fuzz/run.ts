/** The HTTP fuzzer's run: finds real ids on the server, sends the requests, checks every answer and sums them up. */
import http from "node:http";
import { checkResponse, type Rule } from "./checks.ts";
import { bump, excerpt } from "./report.ts";
import { createBudget, RequestMaker, type FuzzRequest } from "./requests.ts";
import { send, type FuzzResponse } from "./transport.ts";
import type { KnownIds } from "./values.ts";

export interface FuzzOptions {
  /** The server: its base URL (http://host:port) or its /graphql URL. */
  url: string;
  requests: number;
  seed: number;
  /** Requests in flight at once (default 4). */
  concurrency?: number;
  /** Only these request indexes (to reproduce a failure); the others are drawn but not sent. */
  only?: number[];
  /** createGeneration requests at most (default: createBudget(requests)). */
  maxCreates?: number;
  /** Per request, ms (default 20 s). */
  timeoutMs?: number;
  /** How long a stream (SSE, multipart) is read before it is dropped, ms (default 1500). */
  streamMs?: number;
  allowInternal?: boolean;
  slowRefusalMs?: number;
  /** Failures kept in the summary per (rule, kind) (default 5); all are counted. */
  keepPerRule?: number;
  /** An Authorization header value (e.g. "Bearer <key>") for every request that sets none itself. */
  authorization?: string;
}

export interface FuzzFailure {
  index: number;
  kind: string;
  rule: Rule;
  reason: string;
  request: { method: string; path: string; headers: Record<string, string>; body?: string; bodyBytes?: number; chunked?: boolean };
  status: number | string;
  ms: number;
  /** The start of the response body. */
  body: string;
}

export interface FuzzSummary {
  url: string;
  seed: number;
  requests: number;
  seconds: number;
  byStatus: Record<string, number>;
  byCode: Record<string, number>;
  byKind: Record<string, number>;
  /** Responses with `data` (the operation ran, at least in part). */
  executed: number;
  generationsCreated: number;
  failureCount: number;
  failuresByRule: Record<string, number>;
  failures: FuzzFailure[];
  /** With `only`: every request sent and the start of its answer. */
  sent?: { index: number; kind: string; request: FuzzFailure["request"]; status: number | string; ms: number; body: string }[];
}

function describe(req: FuzzRequest): FuzzFailure["request"] {
  const out: FuzzFailure["request"] = { method: req.method, path: excerpt(req.path, 1500), headers: Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, excerpt(v, 300)])) };
  if (req.body !== undefined) {
    const buf = Buffer.isBuffer(req.body) ? req.body : Buffer.from(req.body, "utf8");
    out.body = excerpt(Buffer.isBuffer(req.body) ? `base64:${buf.toString("base64")}` : req.body, 2000);
    out.bodyBytes = buf.length;
  }
  if (req.chunked) out.chunked = true;
  return out;
}

/** The server's /graphql and base URLs from either. */
export function urls(url: string): { base: URL; graphql: string } {
  const base = new URL(url.replace(/\/graphql\/?$/, "/"));
  return { base, graphql: new URL("/graphql", base).toString() };
}

/** Real ids and cursors to draw from: a few generations with their images and previews. */
export async function knownIds(url: string, authorization?: string): Promise<KnownIds> {
  const { graphql } = urls(url);
  const res = await fetch(graphql, {
    method: "POST", headers: { "content-type": "application/json", ...(authorization ? { authorization } : {}) },
    body: JSON.stringify({ query: "{ generations(first: 10) { edges { cursor node { id images { id url } latestPreviews { url } } } } }" }),
  });
  const body = (await res.json()) as { data?: { generations?: { edges: { cursor: string; node: { id: string; images: { id: string; url: string }[]; latestPreviews: { url: string }[] } }[] } } };
  const ids: KnownIds = { generations: [], images: [], imageUuids: [], previewUuids: [], pictureUrls: [], cursors: [] };
  const uuidIn = (u: string) => /\/([0-9a-f-]{36})\./.exec(u)?.[1];
  const pathOf = (u: string) => {
    const x = new URL(u, graphql);
    return `${x.pathname}${x.search}`;
  };
  for (const e of body.data?.generations?.edges ?? []) {
    ids.cursors.push(e.cursor);
    ids.generations.push(e.node.id);
    for (const im of e.node.images) {
      ids.images.push(im.id);
      const u = uuidIn(im.url);
      if (u) ids.imageUuids.push(u);
      ids.pictureUrls.push(pathOf(im.url));
    }
    for (const p of e.node.latestPreviews) {
      const u = uuidIn(p.url);
      if (u) ids.previewUuids.push(u);
      ids.pictureUrls.push(pathOf(p.url));
    }
  }
  return ids;
}

export async function live(base: URL, timeoutMs: number): Promise<boolean> {
  try {
    const res = await fetch(new URL("/livez", base), { signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

/** Sends `requests` seeded-random hostile requests to the server at `url` and checks every answer. */
export async function fuzz(o: FuzzOptions): Promise<FuzzSummary> {
  const { base } = urls(o.url);
  if (!(await live(base, 10_000))) throw new Error(`no server answers ${new URL("/livez", base)}`);
  const ids = await knownIds(o.url, o.authorization);
  const maker = new RequestMaker(o.seed, ids, o.maxCreates ?? createBudget(o.requests));
  const agent = new http.Agent({ keepAlive: true, maxSockets: o.concurrency ?? 4 });
  const only = o.only ? new Set(o.only) : null;
  const summary: FuzzSummary = {
    url: base.toString(), seed: o.seed, requests: 0, seconds: 0, byStatus: {}, byCode: {}, byKind: {}, executed: 0, generationsCreated: 0, failureCount: 0, failuresByRule: {}, failures: [],
  };
  const kept: Record<string, number> = {};
  const fail = (index: number, req: FuzzRequest | null, res: FuzzResponse | null, rule: Rule, reason: string) => {
    summary.failureCount++;
    bump(summary.failuresByRule, rule);
    const key = `${rule}/${req?.kind ?? ""}`;
    if ((kept[key] = (kept[key] ?? 0) + 1) > (o.keepPerRule ?? 5)) return;
    summary.failures.push({
      index, kind: req?.kind ?? "", rule, reason, request: req ? describe(req) : { method: "GET", path: "/livez", headers: {} },
      status: res?.status ?? "", ms: res?.ms ?? 0, body: res ? excerpt(res.body.toString("utf8"), 600) : "",
    });
  };
  const t0 = performance.now();
  let next = 0;
  let stopped = false;
  const worker = async () => {
    while (!stopped) {
      const index = next++;
      if (index >= o.requests) return;
      const req = maker.make(index); // drawn in order, so the mutation budget is the same whatever the concurrency
      if (only && !only.has(index)) continue;
      if (o.authorization && !Object.keys(req.headers).some((h) => h.toLowerCase() === "authorization")) req.headers.authorization = o.authorization;
      const res = await send(base, req, { timeoutMs: o.timeoutMs ?? 20_000, streamMs: o.streamMs ?? 1500, agent });
      summary.requests++;
      bump(summary.byKind, req.kind);
      bump(summary.byStatus, String(res.status));
      const v = checkResponse(req, res, o);
      for (const c of v.codes) bump(summary.byCode, c);
      if (v.payloads.some((p) => (p as { data?: unknown } | null)?.data != null)) summary.executed++;
      for (const p of v.problems) fail(index, req, res, p.rule, p.reason);
      maker.learn(req, v.payloads);
      if (only) (summary.sent ??= []).push({ index, kind: req.kind, request: describe(req), status: res.status, ms: res.ms, body: excerpt(res.body.toString("utf8"), 2000) });
      if ((res.status === "timeout" || res.status === "no-response") && !v.problems.length) continue;
      if (res.status === "timeout" || res.status === "no-response") {
        // Is the server still there? A stalled or dead one ends the run rather than timing out every request.
        if (!(await live(base, 60_000))) {
          fail(index, req, null, "not-live", `after request ${index}, /livez did not answer within 60 s: the run stopped`);
          stopped = true;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, o.concurrency ?? 4) }, worker));
  // Generations this run created are cancelled, so the worker does not spend its time on them.
  for (const id of maker.created) {
    await fetch(new URL("/graphql", base), {
      method: "POST", headers: { "content-type": "application/json", ...(o.authorization ? { authorization: o.authorization } : {}) },
      body: JSON.stringify({ query: "mutation($id: ID!) { cancelGeneration(id: $id) { id } }", variables: { id } }),
    }).then((r) => r.arrayBuffer()).catch(() => undefined);
  }
  summary.generationsCreated = maker.created.length;
  if (!stopped && !(await live(base, 30_000))) fail(-1, null, null, "not-live", "/livez did not answer 200 after the run");
  agent.destroy();
  summary.seconds = Math.round((performance.now() - t0) / 100) / 10;
  summary.failures.sort((a, b) => a.index - b.index);
  return summary;
}
