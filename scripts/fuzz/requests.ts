/**
 * The HTTP fuzzer's requests. Request i is drawn from its own random stream of (seed, i), so a failure is
 * reproduced by its seed and index (`--only i`). GraphQL documents are built from schema.graphql: random
 * fields, arguments and variables, right and wrong types, bad enum values, huge numbers, NaN-like strings,
 * U+0000, lone surrogates, strings up to 60 KB, bad cursors and global ids, deep nesting, aliases,
 * fragment cycles and fragment "bombs", directives, malformed JSON, wrong JSON types, wrong content types,
 * oversized and chunked bodies, GET with bad `variables`/`extensions`, hostile headers, and a capped
 * number of createGeneration / cancelGeneration mutations (the generations it created are cancelled at
 * the end).
 */
import { getNullableType, type GraphQLInputType } from "graphql";
import { Rng } from "./rng.ts";
import { Doc, gqlString, loadSchema } from "./documents.ts";
import { cursor, EDGE_INTS, globalId, hostileString, NASTY, NO_IDS, unicodeChar, type KnownIds } from "./values.ts";

export interface FuzzRequest {
  /** What it tries (one of KINDS). */
  kind: string;
  method: string;
  /** Path and query string, as sent. */
  path: string;
  headers: Record<string, string>;
  body?: Buffer | string;
  /** Sent with Transfer-Encoding: chunked instead of a Content-Length. */
  chunked?: boolean;
}

const ACCEPTS: readonly (readonly [number, string | undefined])[] = [
  [6, "application/json"], [5, "application/graphql-response+json"], [2, undefined], [2, "*/*"], [1, "application/graphql-response+json, application/json;q=0.9"],
  [0.5, "multipart/mixed"], [0.5, "text/event-stream"], [0.3, "application/xml"], [0.2, "text/plain"],
];

function accept(r: Rng): Record<string, string> {
  const a = r.weighted(ACCEPTS);
  return a === undefined ? {} : { accept: a };
}

function postJson(r: Rng, kind: string, body: unknown, extra: Record<string, string> = {}): FuzzRequest {
  return { kind, method: "POST", path: "/graphql", headers: { "content-type": r.chance(0.9) ? "application/json" : "application/graphql-response+json", ...accept(r), ...extra }, body: JSON.stringify(body) };
}

/** Percent-encodes what a URL cannot carry raw (lone surrogates become U+FFFD's bytes). */
function pct(s: string): string {
  let out = "";
  for (const ch of s) {
    if (/^[A-Za-z0-9\-_.~]$/.test(ch)) out += ch;
    else for (const b of Buffer.from(ch, "utf8")) out += `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/** Header values Node's client can send: anything else becomes "?". */
const headerSafe = (s: string) => s.replace(/[^\t\x20-\x7e\x80-\xff]/g, "?");

function getGraphql(r: Rng, kind: string, params: Record<string, string>, raw = ""): FuzzRequest {
  const q = Object.entries(params).map(([k, v]) => `${k}=${pct(v)}`).join("&");
  return { kind, method: "GET", path: `/graphql?${q}${raw}`, headers: accept(r) };
}

/** The budget of mutations: how many createGeneration requests one run may send. */
export function createBudget(requests: number): number {
  return Math.min(25, Math.max(3, Math.round(requests / 150)));
}

export const KINDS = [
  "query", "get", "malformed-json", "wrong-types", "content-type", "ids", "unicode", "deep", "aliases", "fragments", "directives", "operations",
  "oversize", "mutation", "subscription", "routes", "headers",
] as const;
type Kind = (typeof KINDS)[number];

const WEIGHTS: readonly (readonly [number, Kind])[] = [
  [30, "query"], [6, "get"], [7, "malformed-json"], [7, "wrong-types"], [5, "content-type"], [8, "ids"], [5, "unicode"], [5, "deep"], [4, "aliases"],
  [4, "fragments"], [2, "directives"], [3, "operations"], [2, "oversize"], [3, "mutation"], [1, "subscription"], [5, "routes"], [3, "headers"],
];

/**
 * Draws the requests of one run, in order. Request i depends only on (seed, i), the ids known at the
 * start, and how many mutations earlier requests used (the budget), so a run is reproducible.
 */
export class RequestMaker {
  private readonly schema = loadSchema();
  private creates = 0;
  /** Ids of generations this run created (filled in from responses), to cancel. */
  readonly created: string[] = [];
  constructor(readonly seed: number, readonly ids: KnownIds = NO_IDS, readonly maxCreates = 5) {}

  make(index: number): FuzzRequest {
    const r = new Rng(this.seed, index);
    let kind = r.weighted(WEIGHTS);
    if (kind === "mutation" && this.creates >= this.maxCreates && r.chance(0.7)) kind = "query";
    switch (kind) {
      case "query": return this.query(r);
      case "get": return this.getRequest(r);
      case "malformed-json": return this.malformed(r);
      case "wrong-types": return this.wrongTypes(r);
      case "content-type": return this.contentType(r);
      case "ids": return this.idArgs(r);
      case "unicode": return this.unicode(r);
      case "deep": return this.deep(r);
      case "aliases": return this.aliases(r);
      case "fragments": return this.fragments(r);
      case "directives": return this.directives(r);
      case "operations": return this.operations(r);
      case "oversize": return this.oversize(r);
      case "mutation": return this.mutation(r);
      case "subscription": return this.subscription(r);
      case "routes": return this.routes(r);
      case "headers": return this.hostileHeaders(r);
    }
  }

  private doc(r: Rng): Doc {
    return new Doc(r, this.ids, this.schema);
  }

  /** A random query from the schema, sent as JSON. */
  private queryDoc(r: Rng, d: Doc, maxDepth?: number): string {
    const depth = maxDepth ?? r.weighted([[70, r.int(1, 4)], [25, r.int(5, 9)], [5, r.int(10, 16)]] as const);
    let body = d.selection(this.schema.getQueryType()!, 0, depth);
    if (r.chance(0.04)) body += ` __type(name: ${gqlString(r, r.pick(["Generation", "Query", "Nope", hostileString(r)]))}) { name fields { name type { name ofType { name } } } }`;
    if (r.chance(0.02)) body += " __schema { types { name } }";
    const named = r.chance(0.3) ? r.pick(["Q", "fuzz", "__proto__", "query"]) : undefined;
    return d.vars.length || named || r.chance(0.3) ? `${d.head("query", named)} { ${body} }` : `{ ${body} }`;
  }

  private query(r: Rng): FuzzRequest {
    const d = this.doc(r);
    const query = this.queryDoc(r, d);
    const body: Record<string, unknown> = { query };
    if (Object.keys(d.values).length || r.chance(0.2)) body.variables = d.values;
    if (r.chance(0.1)) body.operationName = r.pick([null, "Q", "fuzz", "nope", ""]);
    return postJson(r, "query", body);
  }

  private getRequest(r: Rng): FuzzRequest {
    const d = this.doc(r);
    const params: Record<string, string> = { query: this.queryDoc(r, d, r.int(1, 4)) };
    const v = r.weighted<string | undefined>([[4, JSON.stringify(d.values)], [2, undefined], [1, "{not json"], [1, "[]"], [1, "5"], [1, '"x"'], [1, "null"], [1, ""], [1, "{\"a\":" + "[".repeat(500)]]);
    if (v !== undefined) params.variables = v;
    const e = r.weighted<string | undefined>([[6, undefined], [1, "{}"], [1, "[]"], [1, "x"], [1, '{"persistedQuery":{"version":1,"sha256Hash":"abc"}}'], [1, "null"]]);
    if (e !== undefined) params.extensions = e;
    if (r.chance(0.15)) params.operationName = r.pick(["Q", "nope", "", hostileString(r)]);
    const raw = r.weighted([[8, ""], [1, "&query=%7Bhealth%7Bok%7D%7D"], [1, "&variables=%ZZ"], [1, "&%E0%A4%A"], [1, "&query"]]);
    if (r.chance(0.1)) params.query = r.pick(["mutation { cancelGeneration(id: \"x\") { id } }", "subscription { generationEvents(id: \"x\") { __typename } }", "", hostileString(r)]);
    return getGraphql(r, "get", params, raw);
  }

  private malformed(r: Rng): FuzzRequest {
    const ok = '{"query":"{ health { ok } }"}';
    const n = r.pick([10, 1000, 20_000, 30_000]);
    const body = r.pick<() => string | Buffer>([
      () => "{not json", () => "{", () => "", () => '{"query":', () => '{"query": "{ health { ok } }",}', () => `\ufeff${ok}`, () => "{'query': '{ health { ok } }'}",
      () => "[".repeat(n) + "]".repeat(n), () => '{"a":'.repeat(n / 10) + "1" + "}".repeat(n / 10), () => `${ok}garbage`, () => `${ok}${ok}`,
      () => '{"query":"{ health { ok } }","variables":{"a":NaN}}', () => '{"query":"{ health { ok } }","variables":{"a":Infinity}}',
      () => "null", () => "true", () => "1e999", () => '"{ health { ok } }"', () => '{"query":"x","query":"{ health { ok } }"}',
      () => '{"__proto__":{"query":"{ health { ok } }"}}', () => `{"query":"{ health { ok } }","variables":{"a":1${"0".repeat(r.int(10, 50_000))}}}`,
      () => Buffer.from(Array.from({ length: r.int(1, 2000) }, () => r.int(0, 255))),
      () => Buffer.concat([Buffer.from('{"query":"{ generations(promptContains: \\"'), Buffer.from([0xff, 0xfe, 0xed, 0xa0, 0x80, 0xc0, 0x80]), Buffer.from('\\") { edges { cursor } } }"}')]),
      () => Buffer.from(ok, "utf16le"), () => '{"query":"{ health { ok } }"', () => '{"query":"\\x41"}', () => '{"query":"\\ud800"}', () => "\u0000",
    ])();
    return { kind: "malformed-json", method: "POST", path: "/graphql", headers: { "content-type": "application/json", ...accept(r) }, body };
  }

  private wrongTypes(r: Rng): FuzzRequest {
    const wrongs: Record<string, () => unknown> = {
      query: () => r.pick<unknown>([123, true, null, [], {}, ["{ health { ok } }"], { query: "{ health { ok } }" }, "", " ", hostileString(r), 1e308]),
      variables: () => r.pick<unknown>(["x", 5, [], true, "{}", [{}], 0, JSON.parse('{"__proto__":{"x":1}}')]),
      operationName: () => r.pick<unknown>([5, {}, [], true, "", "nope", hostileString(r)]),
      extensions: () => r.pick<unknown>(["x", 5, [], true, { persistedQuery: { version: 1, sha256Hash: "abc" } }, { persistedQuery: "x" }]),
      id: () => r.pick<unknown>([1, "x"]), documentId: () => r.pick<unknown>(["x", 1]),
    };
    if (r.chance(0.1)) return postJson(r, "wrong-types", r.pick<unknown>([[{ query: "{ health { ok } }" }], [], [1, 2], "x", 5, null]));
    const body: Record<string, unknown> = { query: "{ health { ok } }" };
    const keys = Object.keys(wrongs);
    for (let i = r.int(1, 3); i > 0; i--) {
      const k = r.pick(keys);
      body[k] = wrongs[k]!();
    }
    if (r.chance(0.2)) delete body.query;
    return postJson(r, "wrong-types", body);
  }

  private contentType(r: Rng): FuzzRequest {
    const type = r.pick<string | undefined>([
      undefined, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json; charset=utf-16", "APPLICATION/JSON",
      "application/json;;;", "application/graphql", "application/graphql; charset=latin1", "application/graphql-response+json", "application/jsonp",
      "application/json, text/plain", "*/*", "application/xml", "", "application/json; charset=\u00ff", "text/event-stream",
    ]);
    const body = r.pick<() => string>([
      () => '{"query":"{ health { ok } }"}', () => "{ health { ok } }", () => "query=%7Bhealth%7Bok%7D%7D", () => "--x\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n{\"query\":\"{ health { ok } }\"}\r\n--x--",
      () => "mutation { createGeneration(input: { prompt: \"\\u0000\" }) { id } }", () => hostileString(r),
    ])();
    return { kind: "content-type", method: "POST", path: "/graphql", headers: { ...(type === undefined ? {} : { "content-type": headerSafe(type) }), ...accept(r) }, body };
  }

  private idArgs(r: Rng): FuzzRequest {
    const d = this.doc(r);
    // A value inline, or as a variable (declared with a right or a wrong type).
    const lit = (v: string) => {
      if (!r.chance(0.25)) return gqlString(r, v);
      const name = `v${d.n++}`;
      d.vars.push(`$${name}: ${r.pick(["ID!", "String", "ID", "Int"])}`);
      d.values[name] = v;
      return `$${name}`;
    };
    const g = () => globalId(r, this.ids);
    const c = () => cursor(r, this.ids);
    const field = r.pick<() => string>([
      () => `generation(id: ${lit(g())}) { id status prompt }`,
      () => `node(id: ${lit(g())}) { id __typename ... on Generation { status } ... on Image { url } }`,
      () => `nodes(ids: [${Array.from({ length: r.int(0, 5) }, () => lit(g())).join(", ")}]) { id __typename }`,
      () => `generations(${r.pick(["first", "last"])}: ${r.pick(EDGE_INTS)}, ${r.pick(["after", "before"])}: ${lit(c())}) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } }`,
      () => `generations(after: ${lit(c())}, before: ${lit(c())}, first: ${r.int(-3, 5)}, last: ${r.int(-3, 5)}) { edges { cursor } }`,
      () => `generations(first: ${r.pick(EDGE_INTS)}, status: ${r.pick(["[QUEUED]", "[]", "RUNNING", "[NOPE]", "[null]", "null"])}, promptContains: ${lit(hostileString(r))}) { edges { node { prompt } } }`,
    ])();
    const query = d.vars.length ? `query(${d.vars.join(", ")}) { ${field} }` : `{ ${field} }`;
    return postJson(r, "ids", { query, variables: d.values });
  }

  private unicode(r: Rng): FuzzRequest {
    const s = hostileString(r) + unicodeChar(r) + r.pick(NASTY);
    const variant = r.int(0, 5);
    if (variant === 0) return postJson(r, "unicode", { query: "query($p: String) { generations(promptContains: $p) { edges { cursor } } }", variables: { p: s } });
    if (variant === 1) return postJson(r, "unicode", { query: `{ generations(promptContains: ${gqlString(r, s)}) { edges { cursor } } }` });
    if (variant === 2) return postJson(r, "unicode", { query: `{ health { ok } ${s} }` }); // raw characters in the document
    if (variant === 3) return postJson(r, "unicode", { query: "query($id: ID!) { generation(id: $id) { id } }", variables: { id: s } });
    if (variant === 4) return getGraphql(r, "unicode", { query: `{ generations(promptContains: ${JSON.stringify(s)}) { edges { cursor } } }` });
    return postJson(r, "unicode", { query: `query ${r.pick(["Q", "ü", "\u0000", "a\ud800"])} { health { ok } }`, operationName: s });
  }

  private deep(r: Rng): FuzzRequest {
    const n = r.pick([20, 100, 1000, 10_000, 30_000]);
    const variant = r.int(0, 6);
    let query: string;
    let variables: unknown;
    if (variant === 0) query = "{".repeat(n) + "}".repeat(n);
    else if (variant === 1) {
      let chain = "name";
      for (let i = r.int(5, 40); i > 0; i--) chain = `ofType { ${chain} }`;
      query = `{ __type(name: "Generation") { fields { type { ${chain} } } } }`;
    } else if (variant === 2) {
      const k = Math.min(n, 900);
      query = `{ generations(status: ${"[".repeat(k)}QUEUED${"]".repeat(k)}) { edges { cursor } } }`;
    } else if (variant === 3) {
      const k = Math.min(n, 500);
      query = `{ generation(id: ${"{a: ".repeat(k)}1${"}".repeat(k)}) { id } }`;
    } else if (variant === 4) {
      // Written out by hand: JSON.stringify itself overflows the stack on such nesting.
      const k = Math.min(n, 20_000);
      const body = `{"query":"query($ids: [ID!]!) { nodes(ids: $ids) { id } }","variables":{"ids":${"[".repeat(k)}"x"${"]".repeat(k)}}}`;
      return { kind: "deep", method: "POST", path: "/graphql", headers: { "content-type": "application/json", ...accept(r) }, body };
    } else if (variant === 5) {
      const k = Math.min(n, 450);
      query = `{ ${"... on Query { ".repeat(k)}health { ok }${" }".repeat(k)} }`;
    } else {
      // Unknown fields nested past the depth limit.
      const k = r.int(10, 300);
      query = `{ health ${"{ a ".repeat(k)}${"}".repeat(k)} }`;
    }
    return postJson(r, "deep", variables === undefined ? { query } : { query, variables });
  }

  private aliases(r: Rng): FuzzRequest {
    const n = r.pick([5, 19, 20, 21, 50, 200, 500]);
    const leaf = r.pick(["health { ok }", "__typename", "models { name }", "generations(first: 1) { edges { cursor } }", "generations(first: 100) { edges { node { images { dataUrl } } } }"]);
    let body = Array.from({ length: n }, (_, i) => `a${i}: ${leaf}`).join(" ");
    if (r.chance(0.3)) body = `g: generation(id: ${JSON.stringify(globalId(r, this.ids))}) { id } g: generation(id: "x") { id } a: health { ok } a: models { name }`;
    return postJson(r, "aliases", { query: `{ ${body} }` });
  }

  private fragments(r: Rng): FuzzRequest {
    const variant = r.int(0, 9);
    let query: string;
    if (variant <= 1) {
      // A "bomb": each fragment spreads the previous one twice; 2^n paths in about 30n bytes.
      const n = r.int(8, 23);
      query = `query { ...F${n} } fragment F0 on Query { health { ok } } `;
      for (let i = 1; i <= n; i++) query += `fragment F${i} on Query { ...F${i - 1} ...F${i - 1} } `;
    } else if (variant === 2) query = "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }";
    else if (variant === 3) query = "query { ...A } fragment A on Query { health { ok } ...A }";
    else if (variant === 4) query = "query { ...Nope }";
    else if (variant === 5) query = `query { ...A } fragment A on ${r.pick(["Image", "Nope", "Int", "Generation", "Mutation"])} { ${r.pick(["id", "__typename", "width"])} }`;
    else if (variant === 6) query = "query { health { ok } } fragment A on Query { health { ok } } fragment A on Query { models { name } }";
    else if (variant === 7) {
      const n = r.int(10, 150); // a long chain: linear, must pass or be refused quickly
      query = `query { ...F${n} } fragment F0 on Query { health { ok } } `;
      for (let i = 1; i <= n; i++) query += `fragment F${i} on Query { ...F${i - 1} } `;
    } else if (variant === 8) {
      query = "query { generations(first: 1) { edges { node { ...G } } } } fragment G on Generation { id images { ...P } latestPreviews { ...P } } fragment P on Picture { width url(size: 64) ...P2 } fragment P2 on Picture { height ... on Image { seed } }";
    } else {
      query = "subscription { ...S } fragment S on Subscription { generationEvents(id: \"x\") { __typename } ...S }";
    }
    return postJson(r, "fragments", { query });
  }

  private directives(r: Rng): FuzzRequest {
    const d = r.pick([
      "@skip(if: true)", "@skip(if: \"yes\")", "@skip", "@include(if: null)", "@nope", "@skip(if: true) @skip(if: false)", "@deprecated", "@specifiedBy(url: \"x\")",
      "@include(if: $b)", "@skip(if: true, extra: 1)", `${"@include(if: true) ".repeat(r.int(5, 60))}`,
    ]);
    const where = r.int(0, 3);
    const query = where === 0 ? `query($b: Boolean) { health ${d} { ok } }`
      : where === 1 ? `query($b: Boolean) ${d} { health { ok } }`
        : where === 2 ? `query($b: Boolean) { ...F ${d} } fragment F on Query { health { ok } }`
          : `query($b: Boolean) { generations(first: 1) ${d} { edges { node { id ${d} } } } }`;
    return postJson(r, "directives", { query, variables: { b: r.pick<unknown>([true, false, null, "true", 1, [], {}]) } });
  }

  private operations(r: Rng): FuzzRequest {
    const two = "query A { health { ok } } query B { models { name } }";
    const c = r.pick<() => [string, unknown]>([
      () => [two, undefined], () => [two, "C"], () => [two, "a"], () => [two, ""], () => ["query A { health { ok } } query A { models { name } }", "A"],
      () => ["{ health { ok } } query B { models { name } }", "B"], () => ["", undefined], () => ["# only a comment", undefined], () => ["fragment F on Query { health { ok } }", undefined],
      () => ["query", undefined], () => ["query {}", undefined], () => ["{ }", undefined], () => ["mutation { }", undefined], () => ["subscription A { health { ok } }", "A"],
      () => ["subscription { a: generationEvents(id: \"x\") { __typename } b: generationEvents(id: \"y\") { __typename } }", undefined],
      () => ["query __proto__ { health { ok } }", "__proto__"], () => ["query constructor { health { ok } }", "constructor"], () => ["{ health { ok } }", ["A"]],
      () => ["schema { query: Query }", undefined], () => ["type X { a: Int }", undefined], () => ["extend type Query { x: Int }", undefined],
    ])();
    return postJson(r, "operations", c[1] === undefined ? { query: c[0] } : { query: c[0], operationName: c[1] });
  }

  private oversize(r: Rng): FuzzRequest {
    const size = r.pick([65_536, 65_537, 70_000, 131_072, 200_000]);
    const pad = (n: number) => "x".repeat(Math.max(0, n));
    const skeleton = '{"query":"{ health { ok } }","variables":{"pad":""}}';
    const body = skeleton.replace('"pad":""', `"pad":"${pad(size - skeleton.length)}"`);
    const chunked = r.chance(0.25);
    return { kind: "oversize", method: "POST", path: "/graphql", headers: { "content-type": "application/json", ...accept(r) }, body: chunked && r.chance(0.5) ? '{"query":"{ health { ok } }"}' : body, chunked };
  }

  private mutation(r: Rng): FuzzRequest {
    const d = this.doc(r);
    const cancel = r.chance(0.4) || this.creates >= this.maxCreates;
    if (cancel) {
      const id = this.created.length && r.chance(0.5) ? r.pick(this.created) : globalId(r, this.ids);
      const arg = r.chance(0.3) ? d.variable(this.schema.getMutationType()!.getFields().cancelGeneration!.args[0]!.type, "id") : gqlString(r, id);
      return postJson(r, "mutation", { query: `${d.head("mutation")} { cancelGeneration(id: ${arg}) { id status } }`, variables: d.values });
    }
    this.creates++;
    const input = this.schema.getMutationType()!.getFields().createGeneration!.args[0]!.type;
    const inputType = getNullableType(input);
    const useVar = r.chance(0.5);
    let arg: string;
    if (useVar) {
      // Mostly garbage; a valid one now and then (one image, no previews: little work for the worker).
      const value = r.chance(0.25) ? { prompt: r.pick(["a big red circle in the centre, blue background", "x", hostileString(r)]), count: 1, previewInterval: 0, seed: r.int(0, 9) } : d.json(inputType as GraphQLInputType, "input", 0);
      d.vars.push(`$input: ${r.chance(0.9) ? "CreateGenerationInput!" : r.pick(["String", "CreateGenerationInput", "[CreateGenerationInput]"])}`);
      d.values.input = value;
      arg = "$input";
    } else arg = d.literal(input, "input", 0);
    return postJson(r, "mutation", { query: `${d.head("mutation")} { createGeneration(input: ${arg}) { id status count seed ${r.chance(0.3) ? "settings { topK topP } queuePosition" : ""} } }`, variables: d.values });
  }

  private subscription(r: Rng): FuzzRequest {
    const id = globalId(r, this.ids);
    const query = `subscription${r.chance(0.3) ? "($id: ID!)" : ""} { generationEvents(id: ${r.chance(0.3) ? "$id" : JSON.stringify(id)}) { __typename ... on Progress { tokensDone mosaic(size: ${r.pick([1, 64, 0, 4096])}) } ... on Failed { code } } }`;
    const acceptType = r.pick(["text/event-stream", "application/json", "multipart/mixed", "application/graphql-response+json"]);
    if (r.chance(0.3)) return { kind: "subscription", method: "GET", path: `/graphql?query=${pct(query)}&variables=${pct(JSON.stringify({ id }))}`, headers: { accept: acceptType } };
    return { kind: "subscription", method: "POST", path: "/graphql", headers: { "content-type": "application/json", accept: acceptType }, body: JSON.stringify({ query, variables: { id } }) };
  }

  private routes(r: Rng): FuzzRequest {
    const variant = r.int(0, 4);
    if (variant === 4 && this.ids.pictureUrls.length) {
      const u = r.pick(this.ids.pictureUrls);
      const extra = r.pick(["", "size=2048", "size=64", "size=-1", "upscale=smooth", "sig=x", "expires=0", "expires=99999999999999999999", "size=64&upscale=nope"]);
      return { kind: "routes", method: r.chance(0.8) ? "GET" : "HEAD", path: extra ? `${u}${u.includes("?") ? "&" : "?"}${extra}` : u, headers: {} };
    }
    if (variant <= 1 || variant === 4) {
      const images = variant === 0;
      const known = images ? this.ids.imageUuids : this.ids.previewUuids;
      const id = known.length && r.chance(0.6) ? r.pick(known) : r.pick([r.uuid(), "-".repeat(36), "0".repeat(36), r.uuid().toUpperCase(), r.uuid().slice(0, 35), `${r.uuid()}x`]);
      const ext = r.pick(["png", "webp", "jpeg", "jpg", "JPG", "gif", "svg", "", "png.png"]);
      const qs: string[] = [];
      if (r.chance(0.6)) qs.push(`size=${r.pick(["1", "64", "256", "1024", "1025", "0", "-1", "1e3", "0x10", "NaN", "", "%20%35", "1.5", "99999999999999999999", "Infinity", "2048"])}`);
      if (r.chance(0.3)) qs.push(`upscale=${r.pick(["nearest", "smooth", "SMOOTH", "", "lanczos", "%00"])}`);
      if (r.chance(0.1)) qs.push("size=64&size=2048");
      const method = r.weighted([[8, "GET"], [2, "HEAD"], [1, "POST"], [1, "DELETE"]] as const);
      const headers: Record<string, string> = r.chance(0.2) ? { "if-none-match": r.pick(['"abc"', "*", "", '"' + r.hex(40) + '"']) } : {};
      return { kind: "routes", method, path: `/${images ? "images" : "previews"}/${id}.${ext}${qs.length ? `?${qs.join("&")}` : ""}`, headers };
    }
    const p = r.pick([
      "/", "/?prompt=%3Cscript%3E", "/livez", "/readyz", "/health", "/graphql/", "/GRAPHQL", "//graphql", "/graphql/../graphql", "/images/", "/images/x",
      "/images/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/%00", "/%ZZ", `/${"a".repeat(r.pick([100, 8000]))}`, "/previews/", "/graphql;x", "/index.html",
      "/.env", "/graphql?query=%7Bhealth%7Bok%7D%7D#frag", "/*", "/metrics",
    ]);
    const method = r.weighted([[8, "GET"], [2, "HEAD"], [2, "POST"], [1, "PUT"], [1, "DELETE"], [1, "OPTIONS"], [1, "PATCH"], [0.5, "TRACE"], [0.5, "PROPFIND"]] as const);
    return { kind: "routes", method, path: p === "/metrics" && r.chance(0.7) ? "/livez" : p, headers: method === "POST" ? { "content-type": "application/json" } : {}, ...(method === "POST" ? { body: '{"query":"{ health { ok } }"}' } : {}) };
  }

  private hostileHeaders(r: Rng): FuzzRequest {
    const headers: Record<string, string> = {};
    for (let i = r.int(1, 3); i > 0; i--) {
      const [name, value] = r.pick<() => [string, string]>([
        () => ["host", r.pick(['evil"<>', "a b", "[::1]:80", "localhost:99999", "a".repeat(r.int(100, 5000)), "", "host\tname", "\u00fcn\u00efcode", "127.0.0.1:1@evil", "localhost:4000/x?y#z", "%00", "[zz]"])],
        () => ["x-forwarded-host", r.pick(["evil.example", "a b", "javascript:alert(1)", "x".repeat(3000)])],
        () => ["x-forwarded-proto", r.pick(["gopher", "https", "", "javascript"])],
        () => ["x-request-id", r.pick(["\u00ff\u00fe", "a".repeat(r.int(129, 8000)), "../../x", "<script>", "id with spaces", ""])],
        () => ["origin", r.pick(["https://evil.example", "null", "", "file://", "http://localhost"])],
        () => ["accept", r.pick(["text/html", "application/xml", "*/*;q=0", "application/graphql-response+json;q=2", "a/b/c", "", ",,,"])],
        () => ["content-encoding", r.pick(["gzip", "deflate", "br", "zstd", "identity", "nope", "gzip, gzip"])],
        () => ["accept-encoding", r.pick(["gzip", "br", "*", "nope", ""])],
        () => ["cookie", "a=" + "b".repeat(r.int(10, 6000))],
        () => ["authorization", r.pick(["Bearer x", "Bearer ", "Basic YTpi", `bearer mosaic_${r.hex(43)}`, "Bearer a b", `Bearer ${"x".repeat(r.int(100, 6000))}`, "", "Bearer \u00ff", "Token mosaic_"])],
        () => ["x-" + r.hex(6), headerSafe(hostileString(r)).slice(0, 4000)],
      ])();
      headers[name] = headerSafe(value);
    }
    const get = r.chance(0.3);
    if (headers.accept === "text/html" && get) headers.accept = "application/json"; // GraphiQL's page is 9 MB of static bundle
    return get
      ? { kind: "headers", method: "GET", path: `/graphql?query=${pct("{ health { ok } generations(first: 1) { edges { node { images { url } } } } }")}`, headers }
      : { kind: "headers", method: "POST", path: "/graphql", headers: { "content-type": "application/json", ...headers }, body: '{"query":"{ health { ok } generations(first: 1) { edges { node { images { url(size: 64) } } } } }"}' };
  }

  /** Notes what a response says about the run (created generations, to cancel). */
  learn(req: FuzzRequest, payloads: unknown[]): void {
    if (req.kind !== "mutation") return;
    for (const p of payloads) {
      const id = (p as { data?: { createGeneration?: { id?: unknown } } })?.data?.createGeneration?.id;
      if (typeof id === "string") this.created.push(id);
    }
  }
}
