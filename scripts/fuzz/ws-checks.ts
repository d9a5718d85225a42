/**
 * The checks on every answer of the WebSocket fuzzer, for what docs/security.md promises:
 *   - every `error` message's payload is a non-empty list of errors, each with `extensions.code`, and so
 *     is every `errors` list in a `next` message; none is INTERNAL (`allowInternal` turns this off);
 *   - no message or close reason carries a stack trace, a file path or driver text (NEEDLES), unless
 *     the socket itself sent that text;
 *   - the server speaks the protocol: only connection_ack / next / error / complete / ping / pong, for ids
 *     the client used, nothing after an operation's error or complete, a pong for every ping, an ack for
 *     a valid connection_init, an answer to every query;
 *   - a socket closes only when a message meant to close it was sent, with that message's code (4400,
 *     4401, 4403, 4409, 4429, 1009; 1007 for a text frame that is not UTF-8; 1006 only after our own
 *     oversized message), else stays open until the client closes it with 1000. 4500 (the server's own
 *     error) is always a failure;
 *   - the run ends within `maxSeconds`, and the server still answers /livez.
 * The checks of one message are here; those that follow a socket over time (acks, answers, pongs,
 * closes) are in ws-socket.ts, those of the whole run in ws-run.ts.
 */
import { getOperationAST, parse } from "graphql";
import { NEEDLES } from "./checks.ts";
import { bump, excerpt } from "./report.ts";
import { MAX_TOKENS } from "./ws-protocol.ts";
import type { WsFuzzSummary } from "./ws-run.ts";
import type { Frame, Op } from "./ws-scripts.ts";

export type WsRule = "close-4500" | "unexpected-close" | "missing-close" | "uncoded-error" | "internal" | "leak" | "protocol" | "no-ack" | "no-answer" | "no-pong" | "connect" | "slow" | "not-live";

const SERVER_TYPES = new Set(["connection_ack", "next", "error", "complete", "ping", "pong"]);

/** What a frame is, where that may explain a close (see WsFailure.cause). */
export function frameCause(f: Frame): string | undefined {
  if (typeof f.data !== "string") return undefined;
  let m: { type?: unknown; payload?: { query?: unknown; operationName?: unknown } };
  try {
    m = JSON.parse(f.data) as typeof m;
  } catch {
    return "not-json";
  }
  if (m?.type === "next" || m?.type === "error" || m?.type === "connection_ack") return "server-only-type";
  if (m?.type !== "subscribe" || typeof m.payload?.query !== "string") return undefined;
  try {
    const doc = parse(m.payload.query, { maxTokens: MAX_TOKENS });
    return getOperationAST(doc, typeof m.payload.operationName === "string" ? m.payload.operationName : undefined) ? undefined : "operation-not-identified";
  } catch {
    return "query-does-not-parse";
  }
}

/** What checkMessage needs to know of a socket (and updates). */
export interface SocketState {
  /** Everything the socket sent, as text: input echoed back is not a leak. */
  sentText: string;
  acked: boolean;
  pongs: number;
  ops: Map<string, { kind: Op["kind"]; pending: number; state: "open" | "done" | "errored" | "completed-by-client" }>;
}

export function leaks(textIn: string, conn: SocketState, report: (what: string) => void): void {
  const scrubbed = textIn.replace(/data:image\/[a-z]+;base64,[A-Za-z0-9+/=]+/g, "data:…");
  for (const [what, re] of NEEDLES) if (re.test(scrubbed) && !re.test(conn.sentText)) report(what);
}

/** Checks one message from the server (see the top of this file); counts it in `c.summary`. */
export function checkMessage(
  t: string, conn: SocketState, c: { allowInternal: boolean; summary: Pick<WsFuzzSummary, "received" | "errorCodes" | "executed"> }, fail: (rule: WsRule, reason: string) => void,
): void {
  leaks(t, conn, (what) => fail("leak", `a message carries ${what}: ${excerpt(t, 300)}`));
  let m: { type?: unknown; id?: unknown; payload?: unknown };
  try {
    m = JSON.parse(t) as typeof m;
  } catch {
    fail("protocol", `a message that is not JSON: ${excerpt(t, 200)}`);
    return;
  }
  if (m === null || typeof m !== "object" || typeof m.type !== "string" || !SERVER_TYPES.has(m.type)) {
    fail("protocol", `a message of an unknown type: ${excerpt(t, 200)}`);
    return;
  }
  bump(c.summary.received, m.type);
  const errorsOf = (errors: unknown, where: string) => {
    if (!Array.isArray(errors) || errors.length === 0) {
      fail("uncoded-error", `${where}: not a non-empty list of errors: ${excerpt(t, 300)}`);
      return;
    }
    for (const e of errors as { message?: unknown; extensions?: { code?: unknown } }[]) {
      const code = e?.extensions?.code;
      if (typeof code !== "string" || code === "") {
        bump(c.summary.errorCodes, "(none)");
        fail("uncoded-error", `${where}: an error without extensions.code: ${excerpt(JSON.stringify(e?.message ?? e), 200)}`);
      } else {
        bump(c.summary.errorCodes, code);
        if ((code === "INTERNAL" || code === "INTERNAL_SERVER_ERROR") && !c.allowInternal) fail("internal", `${where}: ${code}: an unexpected server error on this input`);
      }
      if (typeof e?.message !== "string") fail("protocol", `${where}: an error without a message`);
    }
  };
  switch (m.type) {
    case "connection_ack":
      if (conn.acked) fail("protocol", "a second connection_ack");
      conn.acked = true;
      return;
    case "pong":
      conn.pongs++;
      return;
    case "ping":
      return; // the client need not answer (ws answers protocol-level pings itself)
    default: {
      const id = typeof m.id === "string" ? m.id : undefined;
      const op = id === undefined ? undefined : conn.ops.get(id);
      if (!op) {
        fail("protocol", `a ${m.type} message for an id this socket never used: ${excerpt(t, 200)}`);
        return;
      }
      if (op.state === "done" || op.state === "errored") fail("protocol", `a ${m.type} message after the operation's ${op.state === "errored" ? "error" : "complete"}: ${excerpt(t, 200)}`);
      if (m.type === "error" || m.type === "complete") {
        if (m.type === "error") errorsOf(m.payload, "error message");
        op.pending--;
        if (op.state === "open" && op.pending <= 0) op.state = m.type === "error" ? "errored" : "done";
      } else {
        const p = m.payload as { data?: unknown; errors?: unknown } | null;
        if (p === null || typeof p !== "object") {
          fail("protocol", `a next message without a payload object: ${excerpt(t, 200)}`);
          return;
        }
        if ("errors" in p) errorsOf(p.errors, "next message");
        if (p.data != null) c.summary.executed++;
      }
    }
  }
}
