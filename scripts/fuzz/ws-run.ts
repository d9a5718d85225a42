/**
 * The WebSocket fuzzer's run: draws the scripts, runs them on a few sockets at once and sums them up. A
 * failure carries the script's index and the frames that socket sent, so it can be replayed by hand.
 */
import { bump } from "./report.ts";
import { Rng } from "./rng.ts";
import { knownIds, live, urls } from "./run.ts";
import { NO_IDS, type KnownIds } from "./values.ts";
import type { WsRule } from "./ws-checks.ts";
import { WsScriptMaker, type WsScript } from "./ws-scripts.ts";
import { runScript } from "./ws-socket.ts";

export interface WsFuzzOptions {
  /** The server: its base URL (http://host:port) or its /graphql URL (http or ws). */
  url: string;
  /** Messages (frames) to send in all. */
  messages: number;
  seed: number;
  /** About how many sockets (scripts) to spread them over (default 20). */
  connections?: number;
  /** Sockets open at once (default 4). */
  concurrency?: number;
  /** Only these script indexes (to reproduce a failure); the others are drawn but not run. */
  only?: number[];
  /** How long to wait for an ack, an answer or a close, ms (default 15 s). */
  timeoutMs?: number;
  /** The whole run must end within this (default 60 s + 0.2 s per message). */
  maxSeconds?: number;
  allowInternal?: boolean;
  /** Failures kept in the summary per (rule, script kind) (default 5); all are counted. */
  keepPerRule?: number;
  /** Sent as connectionParams.authorization in every valid connection_init. */
  authorization?: string;
}

export interface WsFailure {
  script: number;
  kind: string;
  step: number;
  stepKind: string;
  rule: WsRule;
  reason: string;
  /**
   * For a close: what the unanswered message before it was, as the client sees it (query-does-not-parse:
   * a subscribe whose document graphql-js cannot parse within the token limit; operation-not-identified;
   * server-only-type: a message type only a server sends; not-json).
   */
  cause?: string;
  /** The frames this socket sent, up to the failure (the last 40, excerpts; binary as base64). */
  sent: string[];
  /** The last messages it received (excerpts). */
  received: string[];
}

export interface WsFuzzSummary {
  url: string;
  seed: number;
  /** Frames sent. */
  messages: number;
  /** Sockets opened. */
  connections: number;
  seconds: number;
  /** How the server closed the sockets (1000: the client closed a socket that was still fine). */
  closeCodes: Record<string, number>;
  /** extensions.code of every error in `error` and `next` messages. */
  errorCodes: Record<string, number>;
  /** Messages received, by type. */
  received: Record<string, number>;
  byScriptKind: Record<string, number>;
  /** Operations that returned data. */
  executed: number;
  failureCount: number;
  failuresByRule: Record<string, number>;
  failures: WsFailure[];
}

/** Draws the scripts of a run: about messages/connections frames each, `messages` frames in all (with the inits). */
export function drawScripts(o: { seed: number; messages: number; connections?: number; ids?: KnownIds; authorization?: string }): WsScript[] {
  const maker = new WsScriptMaker(o.seed, o.ids ?? NO_IDS, o.authorization);
  const avg = Math.max(3, Math.round(o.messages / Math.max(1, o.connections ?? 20)));
  const scripts: WsScript[] = [];
  let total = 0;
  for (let i = 0; total < o.messages; i++) {
    const r = new Rng(o.seed, 2_000_000 + i);
    const length = Math.min(o.messages - total, r.int(Math.ceil(avg / 2), Math.floor(avg * 1.5)));
    const s = maker.make(i, length);
    // The last script may come out longer than what is left (a closing message after the init): trimmed.
    while (s.frames > o.messages - total && s.steps.length) s.frames -= s.steps.pop()!.frames.length;
    if (!s.steps.length) break;
    scripts.push(s);
    total += s.frames;
  }
  return scripts;
}

/** Sends `messages` seeded-random hostile graphql-ws messages to the server at `url` and checks every answer. */
export async function fuzzWebSocket(o: WsFuzzOptions): Promise<WsFuzzSummary> {
  const { base } = urls(o.url.replace(/^ws/, "http"));
  const wsUrl = new URL("/graphql", base).toString().replace(/^http/, "ws");
  if (!(await live(base, 10_000))) throw new Error(`no server answers ${new URL("/livez", base)}`);
  const ids = await knownIds(base.toString(), o.authorization);
  const scripts = drawScripts({ seed: o.seed, messages: o.messages, connections: o.connections, ids, authorization: o.authorization });
  const only = o.only ? new Set(o.only) : null;
  const timeoutMs = o.timeoutMs ?? 15_000;
  const maxSeconds = o.maxSeconds ?? 60 + o.messages * 0.2;
  const summary: WsFuzzSummary = {
    url: wsUrl, seed: o.seed, messages: 0, connections: 0, seconds: 0, closeCodes: {}, errorCodes: {}, received: {}, byScriptKind: {}, executed: 0,
    failureCount: 0, failuresByRule: {}, failures: [],
  };
  const kept: Record<string, number> = {};
  const fail = (f: Omit<WsFailure, "sent" | "received"> & { sent?: string[]; received?: string[] }) => {
    summary.failureCount++;
    bump(summary.failuresByRule, f.rule);
    const key = `${f.rule}/${f.kind}`;
    if ((kept[key] = (kept[key] ?? 0) + 1) > (o.keepPerRule ?? 5)) return;
    summary.failures.push({ ...f, sent: f.sent ?? [], received: f.received ?? [] });
  };
  const t0 = performance.now();
  let next = 0;
  let outOfTime = false;
  const worker = async () => {
    while (true) {
      const s = scripts[next++];
      if (!s) return;
      if (only && !only.has(s.index)) continue;
      if ((performance.now() - t0) / 1000 > maxSeconds) {
        if (!outOfTime) fail({ script: s.index, kind: s.kind, step: -1, stepKind: "", rule: "slow", reason: `the run took over ${maxSeconds} s: scripts from ${s.index} on were not run` });
        outOfTime = true;
        return;
      }
      bump(summary.byScriptKind, s.kind);
      await runScript(s, { wsUrl, timeoutMs, allowInternal: o.allowInternal ?? false, authorization: o.authorization, summary, fail });
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, o.concurrency ?? 4) }, worker));
  if (!(await live(base, 30_000))) fail({ script: -1, kind: "", step: -1, stepKind: "", rule: "not-live", reason: "/livez did not answer 200 after the run" });
  summary.seconds = Math.round((performance.now() - t0) / 100) / 10;
  if (summary.seconds > maxSeconds && !outOfTime) fail({ script: -1, kind: "", step: -1, stepKind: "", rule: "slow", reason: `the run took ${summary.seconds} s (limit ${maxSeconds} s)` });
  summary.failures.sort((a, b) => a.script - b.script || a.step - b.step);
  return summary;
}
