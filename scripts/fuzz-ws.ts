/**
 * A seeded fuzzer for GraphQL over WebSocket (graphql-ws, subprotocol "graphql-transport-ws", on the
 * server's /graphql): the WebSocket half of scripts/fuzz.ts, and drawn from the same random streams,
 * documents and variables. A run is split into scripts, one per socket, each drawn in full from its own
 * stream (seed, script) before anything is sent, so a run is reproducible whatever the server answers:
 *   - mostly a valid connection_init, then subscribe messages with random documents built from
 *     schema.graphql (queries, and generationEvents subscriptions with real and bad ids, inline or as
 *     variables of right and wrong types), hostile documents (syntax errors, the token and depth limits,
 *     fragment bombs and cycles, many operations, mutations), pings, pongs, completes, bursts of more
 *     operations than one socket may run;
 *   - messages before connection_init, connection_init with odd payloads (wrong authorization, not an
 *     object), a second connection_init, a duplicate id, unknown or server-only message types, invalid
 *     JSON, malformed subscribe messages, binary frames, text frames that are not UTF-8, and messages
 *     over 64 KiB.
 * Every answer is checked for what docs/security.md promises:
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
 * A failure carries the script's index and the frames that socket sent, so it can be replayed by hand.
 *
 *   npm run fuzz -- --requests 2000 --ws 500      (scripts/fuzz.ts runs the HTTP fuzzer, then this)
 */
import WebSocket from "ws";
import {
  Doc, globalId, gqlString, hostileString, knownIds, live, loadSchema, NEEDLES, NO_IDS, Rng, urls, wrongJson, type KnownIds,
} from "./fuzz.ts";
import { getNamedType, getOperationAST, isUnionType, parse, type GraphQLCompositeType, type GraphQLSchema } from "graphql";

export const WS_PROTOCOL = "graphql-transport-ws";
/** The server's limit on one message (src/graphql/limits.ts MAX_BODY_BYTES). */
const MAX_MESSAGE = 64 * 1024;
/** Operations one socket may run at once (MOSAIC_WS_MAX_SUBSCRIPTIONS' default). */
const MAX_OPERATIONS = 20;
/** Close codes a client may see at all; any other is a failure. 4500 is the server's own error. */
export const EXPECTED_CLOSE_CODES = [1000, 1007, 1009, 4400, 4401, 4403, 4409, 4429] as const;
/** The server's token limit (src/graphql/limits.ts): a document over it is refused as it is parsed. */
const MAX_TOKENS = 2000;

// ---------------------------------------------------------------------------------------------------
// Scripts

export interface Frame {
  data: string | Buffer;
  /** A binary frame (else text; a Buffer as text is sent as is, which need not be UTF-8). */
  binary?: boolean;
}

/** An operation a subscribe message starts, and what must come back. */
interface Op {
  id: string;
  /** query: must be answered (next+complete or error); subscription: may stay open; bad: must be refused or answered. */
  kind: "query" | "subscription" | "bad";
}

interface Step {
  /** What it tries (for the summary and failure reports). */
  kind: string;
  /** Sent in one go, without waiting in between. */
  frames: Frame[];
  ops?: Op[];
  /** A connection_init that must be acknowledged: nothing more is sent until the ack (or a close). */
  awaitAck?: boolean;
  pings?: number;
  /** The server must close the socket after this step, with one of these codes. */
  closes?: number[];
  /** ...or may also leave it open (a race the client cannot rule out). */
  mayStayOpen?: boolean;
  /** An oversized frame: the server may drop the connection before its close frame arrives (1006). */
  oversize?: boolean;
}

export interface WsScript {
  index: number;
  kind: string;
  steps: Step[];
  /** Frames in all. */
  frames: number;
}

const text = (v: unknown): Frame => ({ data: JSON.stringify(v) });
const byteLength = (f: Frame) => (typeof f.data === "string" ? Buffer.byteLength(f.data) : f.data.length);

/** Draws scripts: one socket's messages each, from (seed, script index) alone. */
export class WsScriptMaker {
  private readonly schema: GraphQLSchema = loadSchema();
  constructor(readonly seed: number, readonly ids: KnownIds = NO_IDS, readonly authorization?: string) {}

  /** Script `index`, about `length` frames long (a script that ends early, by design, is shorter). */
  make(index: number, length: number): WsScript {
    const r = new Rng(this.seed, 1_000_000 + index); // streams apart from the HTTP fuzzer's requests
    const s = new ScriptBuilder(r, this.schema, this.ids, this.authorization);
    const kind = r.weighted([[10, "normal"], [6, "ends-hostile"], [2, "odd-init"], [2, "before-init"]] as const);
    s.kind = kind;
    if (kind === "before-init") {
      // ping / pong / complete are fine before connection_init; a subscribe is 4401.
      for (let i = r.int(0, 2); i > 0; i--) s.beforeInit();
      if (r.chance(0.5)) {
        s.subscribeBeforeInit();
        return s.done(index);
      }
      s.init();
    } else if (kind === "odd-init") {
      if (!s.oddInit()) return s.done(index);
    } else s.init();
    const hostileEnd = kind === "ends-hostile";
    while (s.frames < length - (hostileEnd ? 1 : 0)) {
      if (!s.body(length - s.frames - (hostileEnd ? 1 : 0))) break;
      if (s.closed) return s.done(index);
    }
    if (hostileEnd) s.hostileEnd();
    return s.done(index);
  }
}

class ScriptBuilder {
  kind = "";
  steps: Step[] = [];
  frames = 0;
  /** A step that closes the socket was added (an oversized drawn message included). */
  closed = false;
  private n = 0;
  private readonly opened: Op[] = [];
  private readonly usedIds = new Set<string>();
  constructor(readonly r: Rng, readonly schema: GraphQLSchema, readonly ids: KnownIds, readonly authorization?: string) {}

  done(index: number): WsScript {
    return { index, kind: this.kind, steps: this.steps, frames: this.frames };
  }

  private add(step: Step): void {
    // A drawn message may come out over the limit (long strings, escapes): then it is an oversize step.
    if (!step.closes && step.frames.some((f) => byteLength(f) > MAX_MESSAGE)) {
      const k = step.frames.findIndex((f) => byteLength(f) > MAX_MESSAGE);
      step = { ...step, kind: `${step.kind}+oversize`, frames: step.frames.slice(0, k + 1), ops: step.ops?.slice(0, k), closes: [1009], oversize: true, awaitAck: false };
    }
    this.steps.push(step);
    this.frames += step.frames.length;
    if (step.closes && !step.mayStayOpen) this.closed = true;
    for (const op of step.ops ?? []) this.opened.push(op);
  }

  private initPayload(): unknown {
    return this.authorization ? { authorization: this.authorization } : this.r.pick<unknown>([undefined, undefined, {}, null, { client: "fuzz" }]);
  }

  init(): void {
    const payload = this.initPayload();
    this.add({ kind: "init", frames: [text(payload === undefined ? { type: "connection_init" } : { type: "connection_init", payload })], awaitAck: true });
  }

  /** A connection_init with an odd payload: acknowledged, 4403 (a bad authorization) or 4400 (not an object). False when it closes. */
  oddInit(): boolean {
    const r = this.r;
    const variant = r.weighted([[4, "accepted"], [4, "forbidden"], [2, "invalid"]] as const);
    if (variant === "accepted") {
      let payload = r.pick<() => unknown>([
        () => ({}), () => null, () => ({ authorization: "" }), () => ({ authorization: null }), () => ({ x: hostileString(r).slice(0, 2000) }),
        () => JSON.parse('{"__proto__":{"authorization":"Bearer x"}}'), () => ({ constructor: { prototype: { polluted: true } } }),
        () => ({ headers: { authorization: "Bearer x" } }), () => ({ a: { b: { c: [1, "2", null] } } }), () => ({ [hostileString(r).slice(0, 100)]: wrongJson(r) }),
      ])();
      // With a key to send (a server that needs one), it goes along with the odd parts.
      if (this.authorization) payload = { ...(payload !== null && typeof payload === "object" ? payload : {}), authorization: this.authorization };
      this.add({ kind: "init-odd-accepted", frames: [text({ type: "connection_init", payload, ...(r.chance(0.2) ? { extra: wrongJson(r) } : {}) })], awaitAck: true });
      return true;
    }
    if (variant === "forbidden") {
      const auth = r.pick<() => unknown>([
        () => 5, () => true, () => ["Bearer x"], () => ({}), () => "Bearer x", () => "Bearer ", () => "Basic YTpi", () => `Bearer mosaic_${r.hex(43)}`,
        () => `Bearer ${"x".repeat(r.int(100, 5000))}`, () => "Bearer \u0000", () => `Bearer ${hostileString(r).slice(0, 500)}`, () => "x", () => " ",
        () => `Bearer ${r.pick(["'; DROP TABLE api_key; --", "\ud800", "💥", "%00"])}`,
      ])();
      this.add({ kind: "init-forbidden", frames: [text({ type: "connection_init", payload: { authorization: auth } })], closes: [4403] });
      return false;
    }
    const payload = r.pick<unknown>(["x", 5, true, [], [{ authorization: "Bearer x" }], 0, ""]);
    this.add({ kind: "init-invalid", frames: [text({ type: "connection_init", payload })], closes: [4400] });
    return false;
  }

  /** A message that is fine before connection_init. */
  beforeInit(): void {
    const r = this.r;
    const v = r.int(0, 2);
    if (v === 0) this.add({ kind: "ping-before-init", frames: [text(r.chance(0.5) ? { type: "ping" } : { type: "ping", payload: { t: r.int(0, 1e6) } })], pings: 1 });
    else if (v === 1) this.add({ kind: "pong-before-init", frames: [text({ type: "pong" })] });
    else this.add({ kind: "complete-before-init", frames: [text({ type: "complete", id: this.newId() })] });
  }

  subscribeBeforeInit(): void {
    this.add({ kind: "subscribe-before-init", frames: [text({ type: "subscribe", id: this.newId(), payload: { query: "{ health { ok } }" } })], closes: [4401] });
  }

  private newId(): string {
    const r = this.r;
    const n = this.n++;
    let id = r.weighted<() => string>([
      [8, () => String(n)], [2, () => `op-${n}`], [1, () => r.pick(["__proto__", "constructor", "toString", "hasOwnProperty", "valueOf"])],
      [1, () => hostileString(r).slice(0, 200) || `x${n}`], [1, () => r.uuid()],
    ])();
    if (this.usedIds.has(id)) id = `${id}#${n}`;
    this.usedIds.add(id);
    return id;
  }

  private subscribe(kind: string, op: Op["kind"], payload: Record<string, unknown>): void {
    const id = this.newId();
    this.add({ kind, frames: [text({ type: "subscribe", id, payload })], ops: [{ id, kind: op }] });
  }

  /** One ordinary step, at most `room` frames. False when nothing fits. */
  body(room: number): boolean {
    const r = this.r;
    if (room <= 0) return false;
    const what = r.weighted([
      [10, "query"], [5, "events"], [2, "schema-subscription"], [3, "hostile-doc"], [2, "ping"], [1, "pong"], [2, "complete"], [room >= 25 ? 0.4 : 0, "burst"],
    ] as const);
    switch (what) {
      case "query": {
        const d = new Doc(r, this.ids, this.schema);
        const query = this.queryDoc(d);
        const payload: Record<string, unknown> = { query };
        if (Object.keys(d.values).length || r.chance(0.2)) payload.variables = d.values;
        if (r.chance(0.1)) payload.operationName = r.pick([null, "Q", "fuzz", "nope", ""]);
        if (r.chance(0.05)) payload.extensions = r.pick<unknown>([{}, { persistedQuery: { version: 1, sha256Hash: "abc" } }, null]);
        this.subscribe("query", "query", payload);
        return true;
      }
      case "events": {
        const d = new Doc(r, this.ids, this.schema);
        this.subscribe("events", "subscription", this.eventsDoc(d));
        return true;
      }
      case "schema-subscription": {
        // Drawn from the schema like the queries: aliases, several root fields, wrong arguments.
        const d = new Doc(r, this.ids, this.schema);
        const body = d.selection(this.schema.getSubscriptionType()!, 0, r.int(1, 5));
        this.subscribe("schema-subscription", "subscription", { query: `${d.head("subscription")} { ${body} }`, variables: d.values });
        return true;
      }
      case "hostile-doc":
        this.subscribe("hostile-doc", "bad", this.hostileDoc());
        return true;
      case "ping":
        this.add({ kind: "ping", frames: [text(r.chance(0.5) ? { type: "ping" } : { type: "ping", payload: r.pick<unknown>([{}, { t: r.int(0, 1e6) }, { x: hostileString(r).slice(0, 1000) }]) })], pings: 1 });
        return true;
      case "pong":
        this.add({ kind: "pong", frames: [text(r.chance(0.5) ? { type: "pong" } : { type: "pong", payload: { t: 1 } })] });
        return true;
      case "complete": {
        // Of an operation this socket started (running or not), or of one it never did.
        const id = this.opened.length && r.chance(0.7) ? r.pick(this.opened).id : this.newId();
        this.add({ kind: "complete", frames: [text({ type: "complete", id })] });
        return true;
      }
      case "burst": {
        // More operations at once than one socket may run: the ones past the limit are refused (TOO_MANY_SUBSCRIPTIONS).
        const k = r.int(MAX_OPERATIONS + 1, 25);
        const ops: Op[] = [];
        const frames: Frame[] = [];
        for (let i = 0; i < k; i++) {
          const id = this.newId();
          ops.push({ id, kind: "query" });
          frames.push(text({ type: "subscribe", id, payload: { query: r.pick(["{ health { ok } }", "{ models { name } }", "{ generations(first: 2) { edges { cursor } } }"]) } }));
        }
        this.add({ kind: "burst", frames, ops });
        return true;
      }
    }
  }

  /** A random query from the schema (as scripts/fuzz.ts draws them). */
  private queryDoc(d: Doc): string {
    const r = this.r;
    const depth = r.weighted([[70, r.int(1, 4)], [25, r.int(5, 9)], [5, r.int(10, 16)]] as const);
    let body = d.selection(this.schema.getQueryType()!, 0, depth);
    if (r.chance(0.04)) body += ` __type(name: ${gqlString(r, r.pick(["Generation", "Query", "Nope", hostileString(r)]))}) { name fields { name } }`;
    const named = r.chance(0.3) ? r.pick(["Q", "fuzz", "__proto__", "query"]) : undefined;
    return d.vars.length || named || r.chance(0.3) ? `${d.head("query", named)} { ${body} }` : `{ ${body} }`;
  }

  /** generationEvents with a real or bad id, inline or as a variable of a right or wrong type. */
  private eventsDoc(d: Doc): Record<string, unknown> {
    const r = this.r;
    const event = getNamedType(this.schema.getSubscriptionType()!.getFields().generationEvents!.type) as GraphQLCompositeType;
    const selection = r.chance(0.5)
      ? `__typename ... on Progress { tokensDone mosaic(size: ${r.pick([1, 16, 64, 0, -1, 4096])}) } ... on Failed { code message } ... on Completed { generation { id status images { url } } }`
      : isUnionType(event) ? d.selection(event, 1, r.int(2, 5)) : "__typename";
    const id = globalId(r, this.ids);
    if (r.chance(0.4)) {
      const declared = r.chance(0.8) ? "ID!" : r.pick(["ID", "String!", "Int", "[ID!]", "Generation"]);
      const value = r.chance(0.8) ? id : wrongJson(r);
      return { query: `subscription${r.chance(0.3) ? " S" : ""}($id: ${declared}) { generationEvents(id: $id) { ${selection} } }`, variables: r.chance(0.95) ? { id: value } : {} };
    }
    return { query: `subscription { generationEvents(id: ${gqlString(r, id)}) { ${selection} } }` };
  }

  /** A document the server must refuse (or answer) without closing the socket. */
  private hostileDoc(): Record<string, unknown> {
    const r = this.r;
    const bomb = (n: number) => {
      let q = `query { ...F${n} } fragment F0 on Query { health { ok } } `;
      for (let i = 1; i <= n; i++) q += `fragment F${i} on Query { ...F${i - 1} ...F${i - 1} } `;
      return q;
    };
    const two = "query A { health { ok } } query B { models { name } }";
    const c = r.pick<() => Record<string, unknown>>([
      // Syntax errors, and the limits graphql-armor enforces while parsing (tokens) and validating (depth, aliases, cost).
      () => ({ query: r.pick(["{ health { ok ", "{", "}", "", " ", "query", "{ health(: 1) { ok } }", "{ health { ok } } garbage", "\u0000", '{ health { ok } "', "query Q($) { health { ok } }"]) }),
      () => ({ query: hostileString(r).slice(0, 20_000) }),
      () => ({ query: `{ ${"__typename ".repeat(r.pick([1999, 2100, 5000]))}}` }),
      () => ({ query: "{".repeat(r.pick([20, 500, 3000])) + "}".repeat(r.pick([0, 20, 500, 3000])) }),
      () => {
        const k = r.int(5, 40);
        return { query: `{ __type(name: "Generation") { fields { type { ${"ofType { ".repeat(k)}name${" }".repeat(k)} } } } }` };
      },
      () => ({ query: `{ ${Array.from({ length: r.pick([19, 20, 21, 200]) }, (_, i) => `a${i}: health { ok }`).join(" ")} }` }),
      () => ({ query: bomb(r.int(8, 23)) }),
      () => ({ query: "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }" }),
      () => ({ query: "query { ...Nope }" }),
      // Operations: several without a name, a name that is not there, none, a mutation, a subscription with two fields.
      () => ({ query: two }), () => ({ query: two, operationName: r.pick(["C", "a", ""]) }), () => ({ query: two, operationName: "B" }),
      () => ({ query: "fragment F on Query { health { ok } }" }), () => ({ query: "# only a comment" }), () => ({ query: "type X { a: Int }" }),
      () => ({ query: `mutation { cancelGeneration(id: ${JSON.stringify(r.pick(["x", "", Buffer.from(`Generation:${r.uuid()}`).toString("base64")]))}) { id } }` }),
      () => ({ query: 'subscription { a: generationEvents(id: "x") { __typename } b: generationEvents(id: "y") { __typename } }' }),
      () => ({ query: "subscription { health { ok } }" }), () => ({ query: '{ generationEvents(id: "x") { __typename } }' }),
      () => ({ query: "subscription { ...S } fragment S on Subscription { generationEvents(id: \"x\") { __typename } ...S }" }),
      // Variables: undeclared, undefined, wrong types, an array where an object goes is a 4400 (see hostileEnd).
      () => ({ query: "query($id: ID!) { generation(id: $id) { id } }", variables: { id: wrongJson(r) } }),
      () => ({ query: "query($id: ID!) { generation(id: $id) { id } }" }),
      () => ({ query: "{ generation(id: $nope) { id } }", variables: { nope: "x" } }),
      () => ({ query: "query($first: Int) { generations(first: $first) { edges { cursor } } }", variables: { first: r.pick<unknown>([1e308, -1, 2147483648, "5", 1.5, null, "NaN"]) } }),
      () => ({ query: `{ health @${r.pick(["skip(if: $b)", "nope", "include", "skip(if: \"yes\")"])} { ok } }` }),
      () => ({ query: "{ __schema { types { name } } }" }),
    ]);
    return c();
  }

  /** A last message that must close the socket, with the code it must close with. */
  hostileEnd(): void {
    const r = this.r;
    const id = () => this.newId();
    const what = r.weighted([
      [3, "invalid-json"], [2, "unknown-type"], [2, "server-type"], [4, "malformed-subscribe"], [2, "second-init"], [2, "duplicate-id"],
      [2, "binary"], [1, "binary-json"], [1, "not-utf8"], [2, "oversize"],
    ] as const);
    switch (what) {
      case "invalid-json":
        this.add({ kind: what, frames: [{ data: r.pick(["{not json", "", " ", "{", '{"type":', "[]", "null", "5", '"connection_init"', "{'type': 'ping'}", '{"type":"ping"}garbage', "\u0000", "\ud800"]) }], closes: [4400] });
        return;
      case "unknown-type":
        this.add({
          kind: what, frames: [text(r.pick<unknown>([
            { type: "nope" }, { type: 5 }, { type: "" }, { type: null }, { type: "SUBSCRIBE", id: "1", payload: { query: "{ health { ok } }" } },
            { type: "start", id: "1", payload: { query: "{ health { ok } }" } }, { type: "stop", id: "1" }, { type: "connection_terminate" }, { type: "ka" },
            { type: ["ping"] }, { id: "1", payload: { query: "{ health { ok } }" } }, { type: "__proto__" }, { type: hostileString(r).slice(0, 500) || "?" },
          ]))], closes: [4400],
        });
        return;
      case "server-type":
        // Messages only a server sends. The protocol closes on a message it does not expect with 4400.
        this.add({
          kind: what, frames: [text(r.pick<unknown>([
            { type: "connection_ack" }, { type: "next", id: id(), payload: { data: { health: { ok: true } } } },
            { type: "error", id: id(), payload: [{ message: "x" }] }, { type: "next", id: "x", payload: {} },
          ]))], closes: [4400],
        });
        return;
      case "malformed-subscribe": {
        const q = { query: "{ health { ok } }" };
        const m = r.pick<unknown>([
          { type: "subscribe", payload: q }, { type: "subscribe", id: "", payload: q }, { type: "subscribe", id: 5, payload: q }, { type: "subscribe", id: null, payload: q },
          { type: "subscribe", id: ["1"], payload: q }, { type: "subscribe", id: id() }, { type: "subscribe", id: id(), payload: "{ health { ok } }" },
          { type: "subscribe", id: id(), payload: [q] }, { type: "subscribe", id: id(), payload: null }, { type: "subscribe", id: id(), payload: {} },
          { type: "subscribe", id: id(), payload: { query: r.pick<unknown>([5, null, {}, ["{ health { ok } }"], true]) } },
          { type: "subscribe", id: id(), payload: { ...q, variables: r.pick<unknown>(["x", 5, true, [], [{}], "{}"]) } },
          { type: "subscribe", id: id(), payload: { ...q, operationName: r.pick<unknown>([5, {}, [], true]) } },
          { type: "subscribe", id: id(), payload: { ...q, extensions: r.pick<unknown>(["x", 5, [], true]) } },
        ]);
        this.add({ kind: what, frames: [text(m)], closes: [4400] });
        return;
      }
      case "second-init":
        this.add({ kind: what, frames: [text({ type: "connection_init", ...(r.chance(0.5) ? { payload: {} } : {}) })], closes: [4429] });
        return;
      case "duplicate-id": {
        // Two subscribes with one id in one go: the second finds the first still running (4409), unless
        // the first was over before the second arrived.
        const dup = id();
        const sub = text({ type: "subscribe", id: dup, payload: r.chance(0.5) ? { query: "{ health { ok } }" } : this.eventsDoc(new Doc(r, this.ids, this.schema)) });
        this.add({ kind: what, frames: [sub, sub], ops: [{ id: dup, kind: "bad" }, { id: dup, kind: "bad" }], closes: [4409], mayStayOpen: true });
        return;
      }
      case "binary": {
        const bytes = Buffer.from(Array.from({ length: r.int(1, 2000) }, () => r.int(0, 255)));
        this.add({ kind: what, frames: [{ data: r.chance(0.3) ? Buffer.from([0xff, 0xfe, 0x00]) : bytes, binary: true }], closes: [4400] });
        return;
      }
      case "binary-json": {
        // A valid message in a binary frame: the server may read it as text (graphql-ws does) or refuse it.
        const pid = id();
        this.add({ kind: what, frames: [{ data: Buffer.from(JSON.stringify({ type: "subscribe", id: pid, payload: { query: "{ health { ok } }" } })), binary: true }], ops: [{ id: pid, kind: "bad" }], closes: [4400], mayStayOpen: true });
        return;
      }
      case "not-utf8":
        // A text frame must be UTF-8: the WebSocket layer closes with 1007.
        this.add({ kind: what, frames: [{ data: Buffer.concat([Buffer.from('{"type":"ping","payload":{"x":"'), Buffer.from(r.pick([[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80]])), Buffer.from('"}}')]) }], closes: [1007] });
        return;
      case "oversize": {
        const size = r.pick([MAX_MESSAGE + 1, 70_000, 131_072, 300_000]);
        const pad = "x".repeat(size);
        const frame = r.pick<() => Frame>([
          () => text({ type: "subscribe", id: id(), payload: { query: "{ health { ok } }", variables: { pad } } }),
          () => text({ type: "subscribe", id: id(), payload: { query: `{ health { ok } } # ${pad}` } }),
          () => text({ type: "ping", payload: { pad } }),
          () => text({ type: "connection_init", payload: { pad } }),
          () => ({ data: Buffer.alloc(size, 0x41), binary: true }),
        ])();
        this.add({ kind: what, frames: [frame], closes: [1009], oversize: true });
        return;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// The run

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

export type WsRule = "close-4500" | "unexpected-close" | "missing-close" | "uncoded-error" | "internal" | "leak" | "protocol" | "no-ack" | "no-answer" | "no-pong" | "connect" | "slow" | "not-live";

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

const excerpt = (s: string, n: number) => (s.length > n ? `${s.slice(0, n)}… (${s.length} characters)` : s);
const bump = (m: Record<string, number>, k: string) => {
  m[k] = (m[k] ?? 0) + 1;
};
const describeFrame = (f: Frame) => (typeof f.data === "string" ? excerpt(f.data, 400) : `${f.binary ? "binary" : "text-bytes"}:base64:${excerpt(f.data.toString("base64"), 400)}`);

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

const SERVER_TYPES = new Set(["connection_ack", "next", "error", "complete", "ping", "pong"]);
const closeRule = (code: number): WsRule => (code === 4500 ? "close-4500" : "unexpected-close");

async function runScript(s: WsScript, c: RunContext): Promise<void> {
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

/** What checkMessage needs to know of a socket (and updates). */
export interface SocketState {
  /** Everything the socket sent, as text: input echoed back is not a leak. */
  sentText: string;
  acked: boolean;
  pongs: number;
  ops: Map<string, { kind: Op["kind"]; pending: number; state: "open" | "done" | "errored" | "completed-by-client" }>;
}

function leaks(textIn: string, conn: SocketState, report: (what: string) => void): void {
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
