/**
 * The WebSocket fuzzer's scripts: one socket's messages each, drawn in full from its own stream (seed,
 * script) before anything is sent, so a run is reproducible whatever the server answers:
 *   - mostly a valid connection_init, then subscribe messages with random documents built from
 *     schema.graphql (queries, and generationEvents subscriptions with real and bad ids, inline or as
 *     variables of right and wrong types), hostile documents (syntax errors, the token and depth limits,
 *     fragment bombs and cycles, many operations, mutations), pings, pongs, completes, bursts of more
 *     operations than one socket may run;
 *   - messages before connection_init, connection_init with odd payloads (wrong authorization, not an
 *     object), a second connection_init, a duplicate id, unknown or server-only message types, invalid
 *     JSON, malformed subscribe messages, binary frames, text frames that are not UTF-8, and messages
 *     over 64 KiB.
 */
import { getNamedType, isUnionType, type GraphQLCompositeType, type GraphQLSchema } from "graphql";
import { Doc, gqlString, loadSchema, wrongJson } from "./documents.ts";
import { Rng } from "./rng.ts";
import { globalId, hostileString, NO_IDS, type KnownIds } from "./values.ts";
import { MAX_MESSAGE, MAX_OPERATIONS } from "./ws-protocol.ts";

export interface Frame {
  data: string | Buffer;
  /** A binary frame (else text; a Buffer as text is sent as is, which need not be UTF-8). */
  binary?: boolean;
}

/** An operation a subscribe message starts, and what must come back. */
export interface Op {
  id: string;
  /** query: must be answered (next+complete or error); subscription: may stay open; bad: must be refused or answered. */
  kind: "query" | "subscription" | "bad";
}

export interface Step {
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

export const text = (v: unknown): Frame => ({ data: JSON.stringify(v) });
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
