/** One script of the WebSocket fuzzer on its socket: opens it, sends the steps, and follows what comes back. */
import WebSocket from "ws";
import { bump, excerpt } from "./report.ts";
import { checkMessage, frameCause, leaks, type SocketState, type WsRule } from "./ws-checks.ts";
import { WS_PROTOCOL } from "./ws-protocol.ts";
import type { WsFailure, WsFuzzSummary } from "./ws-run.ts";
import { text, type Frame, type Op, type Step, type WsScript } from "./ws-scripts.ts";

const describeFrame = (f: Frame) => (typeof f.data === "string" ? excerpt(f.data, 400) : `${f.binary ? "binary" : "text-bytes"}:base64:${excerpt(f.data.toString("base64"), 400)}`);

interface RunContext {
  wsUrl: string;
  timeoutMs: number;
  allowInternal: boolean;
  authorization?: string;
  summary: WsFuzzSummary;
  fail: (f: Omit<WsFailure, "sent" | "received"> & { sent?: string[]; received?: string[] }) => void;
}

/** One socket of a script: its state and what it has seen. */
class Conn implements SocketState {
  readonly ws: WebSocket;
  readonly received: string[] = [];
  sentText = "";
  readonly sentFrames: Frame[] = [];
  acked = false;
  pongs = 0;
  closed: { code: number; reason: string } | null = null;
  /** An unexpected close of this socket was reported (once). */
  closeReported = false;
  /** Operations started on this socket: subscribes not yet answered by an error or complete (two for a duplicate id). */
  readonly ops = new Map<string, { kind: Op["kind"]; pending: number; state: "open" | "done" | "errored" | "completed-by-client" }>();
  private waiters: (() => void)[] = [];
  constructor(url: string) {
    this.ws = new WebSocket(url, WS_PROTOCOL, { handshakeTimeout: 10_000 });
  }
  notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
  /** Resolves when `cond` holds (true) or after `ms` (false). */
  async until(cond: () => boolean, ms: number): Promise<boolean> {
    const end = performance.now() + ms;
    while (!cond()) {
      const left = end - performance.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 250));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return true;
  }
  openOps() {
    return [...this.ops.values()].filter((op) => op.state === "open");
  }
}

const closeRule = (code: number): WsRule => (code === 4500 ? "close-4500" : "unexpected-close");

export async function runScript(s: WsScript, c: RunContext): Promise<void> {
  const sent: string[] = [];
  let stepIndex = -1;
  let stepKind = "";
  const fail = (rule: WsRule, reason: string, conn?: Conn) => {
    const cause = conn && (rule === "close-4500" || rule === "unexpected-close") ? closeCause(conn) : undefined;
    c.fail({ script: s.index, kind: s.kind, step: stepIndex, stepKind, rule, reason, ...(cause ? { cause } : {}), sent: sent.slice(-40), received: (conn?.received ?? []).slice(-8) });
  };

  /** Opens a socket; null (and a failure) when it does not open. */
  const open = async (): Promise<Conn | null> => {
    const conn = new Conn(c.wsUrl);
    c.summary.connections++;
    const opened = await new Promise<string | null>((resolve) => {
      conn.ws.once("open", () => resolve(null));
      conn.ws.once("unexpected-response", (_req, res) => resolve(`HTTP ${res.statusCode} instead of a WebSocket`));
      conn.ws.once("error", (e) => resolve(e.message));
    });
    conn.ws.on("error", () => undefined); // what went wrong shows in the close code
    if (opened !== null) {
      fail("connect", `the socket did not open: ${opened}`, conn);
      conn.ws.terminate();
      return null;
    }
    if (conn.ws.protocol !== WS_PROTOCOL) fail("protocol", `the server chose subprotocol "${conn.ws.protocol}"`, conn);
    conn.ws.on("message", (data, isBinary) => {
      const t = String(data);
      conn.received.push(excerpt(t, 400));
      if (conn.received.length > 40) conn.received.splice(0, 20);
      if (isBinary) fail("protocol", "a binary message from the server", conn);
      checkMessage(t, conn, c, (rule, reason) => fail(rule, reason, conn));
      conn.notify();
    });
    conn.ws.on("close", (code, reason) => {
      conn.closed = { code, reason: reason.toString() };
      bump(c.summary.closeCodes, String(code));
      leaks(reason.toString(), conn, (what) => fail("leak", `the close reason carries ${what}: ${excerpt(reason.toString(), 300)}`, conn));
      conn.notify();
    });
    return conn;
  };

  const send = (conn: Conn, f: Frame) => {
    sent.push(describeFrame(f));
    c.summary.messages++;
    conn.sentText += typeof f.data === "string" ? f.data : f.data.toString("utf8");
    conn.sentFrames.push(f);
    conn.ws.send(f.data, { binary: f.binary ?? false }, () => undefined); // a send into a socket the server closed fails, as expected
  };

  /** Reports a close that no message of the script asked for (once per socket). */
  const unexpectedClose = (conn: Conn, after: string) => {
    if (conn.closeReported || !conn.closed) return;
    conn.closeReported = true;
    const { code, reason } = conn.closed;
    fail(closeRule(code), `closed ${code} "${excerpt(reason, 300)}" ${after}, which must not close the socket`, conn);
  };

  const first = await open();
  if (!first) return;
  let conn: Conn = first;
  let reopened = false;
  let lastStep: Step | null = null;
  for (const [i, step] of s.steps.entries()) {
    if (conn.closed) {
      // The server closed the socket after a step not meant to close it: reported, and the script goes on
      // on a fresh socket (with a valid connection_init).
      unexpectedClose(conn, `after ${lastStep?.kind ?? "opening"}`);
      const again = await open();
      if (!again) return;
      conn = again;
      reopened = true;
      sent.length = 0; // a failure lists the frames of its own socket
      const fresh = conn;
      send(fresh, text(c.authorization ? { type: "connection_init", payload: { authorization: c.authorization } } : { type: "connection_init" }));
      if (!(await fresh.until(() => fresh.acked || !!fresh.closed, c.timeoutMs)) || fresh.closed) {
        fail(fresh.closed ? closeRule(fresh.closed.code) : "no-ack", "no connection_ack for a valid connection_init on a socket reopened after an unexpected close", fresh);
        fresh.ws.terminate();
        return;
      }
    }
    stepIndex = i;
    stepKind = step.kind;
    lastStep = step;
    const cur = conn;
    for (const op of step.ops ?? []) {
      const known = cur.ops.get(op.id);
      if (known) {
        known.pending++;
        known.state = "open";
      } else cur.ops.set(op.id, { kind: op.kind, pending: 1, state: "open" });
    }
    for (const f of step.frames) send(cur, f);
    if (step.kind === "complete") {
      const op = cur.ops.get((JSON.parse(step.frames[0]!.data as string) as { id: string }).id);
      if (op && op.state === "open") op.state = "completed-by-client";
    }
    if (step.awaitAck) {
      if (!(await cur.until(() => cur.acked || !!cur.closed, c.timeoutMs))) fail("no-ack", `no connection_ack within ${c.timeoutMs} ms`, cur);
      else if (cur.closed && !cur.acked) {
        cur.closeReported = true;
        fail(closeRule(cur.closed.code), `closed ${cur.closed.code} "${excerpt(cur.closed.reason, 200)}" instead of acknowledging connection_init`, cur);
        return;
      }
    }
    if (step.closes) {
      const closed = await cur.until(() => !!cur.closed, step.mayStayOpen ? 1500 : c.timeoutMs);
      if (!closed) {
        if (!step.mayStayOpen) {
          fail("missing-close", `still open ${c.timeoutMs} ms after ${step.kind} (expected close ${step.closes.join(" or ")})`, cur);
          cur.ws.terminate();
          return;
        }
        continue;
      }
      const code = cur.closed!.code;
      if (!(step.closes.includes(code) || (step.oversize && code === 1006))) {
        fail(closeRule(code), `closed ${code} "${excerpt(cur.closed!.reason, 200)}" after ${step.kind}; expected ${step.closes.join(" or ")}${step.oversize ? " (or 1006)" : ""}`, cur);
      }
      return;
    }
    // A step's operations get a second to answer before the next step (a subscription may stay open
    // longer): a close is then seen right after the message that caused it.
    if (step.ops?.length) await cur.until(() => !!cur.closed || step.ops!.every((op) => cur.ops.get(op.id)!.state !== "open"), 1000);
    else await new Promise((resolve) => setImmediate(resolve));
  }
  // Settle: every query and refused document must be answered; subscriptions may stay open (a generation still running).
  const t = performance.now();
  const end = conn;
  await end.until(() => !!end.closed || end.openOps().length === 0 || (end.openOps().every((op) => op.kind === "subscription") && performance.now() - t > 2000), c.timeoutMs);
  if (end.closed) {
    unexpectedClose(end, `while its operations ran (after ${lastStep?.kind ?? "opening"})`);
    return;
  }
  for (const [id, op] of end.ops) {
    if (op.state !== "open") continue;
    if (op.kind !== "subscription") fail("no-answer", `operation ${JSON.stringify(id).slice(0, 100)} (${op.kind}) got no error or complete within ${c.timeoutMs} ms`, end);
    send(end, text({ type: "complete", id }));
    op.state = "completed-by-client";
  }
  const pings = s.steps.reduce((k, st) => k + (st.pings ?? 0), 0);
  if (pings && !reopened && !(await end.until(() => end.pongs >= pings || !!end.closed, 3000)) && !end.closed) fail("no-pong", `${pings} pings, ${end.pongs} pongs`, end);
  end.ws.close(1000);
  if (!(await end.until(() => !!end.closed, 5000))) {
    fail("missing-close", "the server did not answer the client's close within 5 s", end);
    end.ws.terminate();
    return;
  }
  if (end.closed!.code !== 1000) unexpectedClose(end, "as the client closed it with 1000");
}

/** The cause of a close: the last frame sent, else a subscribe on this socket still unanswered. */
function closeCause(conn: Conn): string | undefined {
  const frames = conn.sentFrames;
  const last = frames[frames.length - 1];
  const first = last && frameCause(last);
  if (first) return first;
  for (let i = frames.length - 2; i >= 0; i--) {
    const f = frames[i]!;
    if (typeof f.data !== "string") continue;
    let id: unknown;
    try {
      id = (JSON.parse(f.data) as { id?: unknown }).id;
    } catch {
      continue;
    }
    if (typeof id === "string" && conn.ops.get(id)?.state === "open") {
      const cause = frameCause(f);
      if (cause) return cause;
    }
  }
  return undefined;
}
