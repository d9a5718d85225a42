/**
 * The checks on every answer of the HTTP fuzzer, for what docs/security.md promises:
 *   - no 5xx, and an answer at all (no reset, no hang);
 *   - every error in a JSON body (`errors`, also inside SSE and multipart streams) has `extensions.code`,
 *     and none is INTERNAL (an unexpected exception on a client's input; `allowInternal` turns this off);
 *   - no body carries a stack trace ("    at "), a file path (/work/, node_modules, /src/) or driver text
 *     (prisma, postgres, ECONNREFUSED), unless the request itself carried that text (echoed input);
 *   - a refusal (an error status, or `errors` with no `data`: nothing ran) comes back quickly;
 *   - the server still answers /livez at the end (checked by the run, run.ts).
 */
import type { FuzzRequest } from "./requests.ts";
import type { FuzzResponse } from "./transport.ts";

/** Text that must never reach a client: stacks, file paths, database driver text. */
export const NEEDLES: readonly (readonly [string, RegExp])[] = [
  ["a stack trace", /    at /], ["a file path (/work/)", /\/work\//], ["a file path (node_modules)", /node_modules/], ["a file path (/src/)", /\/src\//],
  ["driver text (prisma)", /prisma/i], ["driver text (postgres)", /postgres/i], ["driver text (ECONNREFUSED)", /ECONNREFUSED/],
];

export type Rule = "5xx" | "no-answer" | "uncoded-error" | "internal" | "leak" | "slow-refusal" | "not-live";

export interface CheckOptions {
  /** Accept INTERNAL errors (by default one is a failure: an unexpected exception on a client's input). */
  allowInternal?: boolean;
  /** A refusal (nothing ran) slower than this is a failure (ms). */
  slowRefusalMs?: number;
}

export interface Verdict {
  problems: { rule: Rule; reason: string }[];
  /** extensions.code (or a route's error.code) of every error seen, once per response; "(none)" for an uncoded one. */
  codes: string[];
  /** The JSON payloads in the body (one, or one per SSE event / multipart part). */
  payloads: unknown[];
}

function requestText(req: FuzzRequest): string {
  const body = req.body === undefined ? "" : Buffer.isBuffer(req.body) ? req.body.toString("utf8") : req.body;
  let path = req.path;
  try {
    path = decodeURIComponent(req.path);
  } catch {
    // a malformed escape: keep it raw
  }
  return `${req.method} ${req.path} ${path} ${JSON.stringify(req.headers)} ${body} ${JSON.stringify(body)}`;
}

/** The JSON payloads of a body: the whole body, or every `data:` line of SSE and every JSON part of multipart. */
function payloadsOf(text: string, type: string): unknown[] {
  if (type.includes("json")) {
    try {
      return [JSON.parse(text)];
    } catch {
      return [];
    }
  }
  const out: unknown[] = [];
  if (type.startsWith("text/event-stream") || type.startsWith("multipart/mixed") || type === "") {
    for (const line of text.split(/\r?\n/)) {
      const l = line.replace(/^data: ?/, "").trim();
      if (!l.startsWith("{")) continue;
      try {
        out.push(JSON.parse(l));
      } catch {
        // a partial line at the end of a dropped stream
      }
    }
  }
  return out;
}

/** Checks one response against the rules (see the top of this file). */
export function checkResponse(req: FuzzRequest, res: FuzzResponse, o: CheckOptions = {}): Verdict {
  const problems: Verdict["problems"] = [];
  const codes = new Set<string>();
  if (typeof res.status !== "number") {
    // An oversized body may be refused by closing the connection before it is all sent.
    const bytes = req.body === undefined ? 0 : Buffer.byteLength(req.body);
    if (!(res.status === "no-response" && (req.kind === "oversize" || bytes > 65_536) && /EPIPE|ECONNRESET/.test(res.error ?? ""))) {
      problems.push({ rule: "no-answer", reason: res.status === "timeout" ? `no answer within ${res.ms} ms` : `${res.status}: ${res.error ?? ""}` });
    }
    return { problems, codes: [], payloads: [] };
  }
  if (res.status >= 500) problems.push({ rule: "5xx", reason: `status ${res.status}` });
  const type = String(res.headers["content-type"] ?? "").toLowerCase();
  if (type.startsWith("image/")) return { problems, codes: [], payloads: [] };
  const text = res.body.toString("utf8");
  // Static pages (the app at /, GraphiQL's bundle, which names its own build paths) are not error output.
  if (!(type.startsWith("text/html") && res.status < 400)) {
    const scrubbed = text.replace(/data:image\/[a-z]+;base64,[A-Za-z0-9+/=]+/g, "data:…");
    const sent = requestText(req);
    for (const [what, re] of NEEDLES) {
      if (re.test(scrubbed) && !re.test(sent)) problems.push({ rule: "leak", reason: `the body carries ${what}` });
    }
  }
  const payloads = payloadsOf(text, type);
  let refusal = res.status >= 400;
  for (const p of payloads) {
    if (p === null || typeof p !== "object") continue;
    const obj = p as { errors?: unknown; error?: unknown; data?: unknown };
    if ("errors" in obj) {
      if (!("data" in obj)) refusal = true;
      if (!Array.isArray(obj.errors)) {
        problems.push({ rule: "uncoded-error", reason: "`errors` is not a list" });
        continue;
      }
      for (const e of obj.errors as { message?: unknown; extensions?: { code?: unknown } }[]) {
        const code = e?.extensions?.code;
        if (typeof code !== "string" || code === "") {
          codes.add("(none)");
          problems.push({ rule: "uncoded-error", reason: `an error without extensions.code: ${JSON.stringify(e?.message ?? e).slice(0, 200)}` });
        } else {
          codes.add(code);
          if ((code === "INTERNAL" || code === "INTERNAL_SERVER_ERROR") && !o.allowInternal) problems.push({ rule: "internal", reason: `${code}: an unexpected server error on this input` });
        }
      }
    } else if (obj.error && typeof obj.error === "object") {
      const code = (obj.error as { code?: unknown }).code;
      codes.add(typeof code === "string" && code ? code : "(none)");
      if (typeof code !== "string" || !code) problems.push({ rule: "uncoded-error", reason: "an error without a code" });
      else if (code === "INTERNAL" && !o.allowInternal) problems.push({ rule: "internal", reason: "INTERNAL: an unexpected server error on this input" });
    }
  }
  const streamed = type.startsWith("text/event-stream") || type.startsWith("multipart/mixed");
  const slow = o.slowRefusalMs ?? 3000;
  if (refusal && !streamed && res.ms > slow) problems.push({ rule: "slow-refusal", reason: `refused after ${res.ms} ms (a refusal runs nothing; the limit is ${slow} ms)` });
  return { problems, codes: [...codes], payloads };
}
