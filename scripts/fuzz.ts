/**
 * A seeded fuzzer for the HTTP API: hostile requests to a running server's /graphql (and a few to
 * /images/…, /previews/…, / and the probes), each checked for what docs/security.md promises:
 *   - no 5xx, and an answer at all (no reset, no hang);
 *   - every error in a JSON body (`errors`, also inside SSE and multipart streams) has `extensions.code`,
 *     and none is INTERNAL (an unexpected exception on a client's input; `allowInternal` turns this off);
 *   - no body carries a stack trace ("    at "), a file path (/work/, node_modules, /src/) or driver text
 *     (prisma, postgres, ECONNREFUSED), unless the request itself carried that text (echoed input);
 *   - a refusal (an error status, or `errors` with no `data`: nothing ran) comes back quickly;
 *   - the server still answers /livez at the end.
 * Request i is drawn from its own random stream of (seed, i), so a failure is reproduced by its seed and
 * index (`--only i`). GraphQL documents are built from schema.graphql: random fields, arguments and
 * variables, right and wrong types, bad enum values, huge numbers, NaN-like strings, U+0000, lone
 * surrogates, strings up to 60 KB, bad cursors and global ids, deep nesting, aliases, fragment cycles
 * and fragment "bombs", directives, malformed JSON, wrong JSON types, wrong content types, oversized and
 * chunked bodies, GET with bad `variables`/`extensions`, hostile headers, and a capped number of
 * createGeneration / cancelGeneration mutations (the generations it created are cancelled at the end).
 *
 *   npm run fuzz -- --requests 10000 [--seed N] [--url http://host:port] [--concurrency 4] [--only i,j]
 *                   [--authorization "Bearer <key>"] [--allow-internal] [--timeout-ms 20000] [--ws 500]
 *
 * Without --url it starts its own server ("all": API and worker) on a fresh test database (DATABASE_URL's
 * server, else the PostgreSQL at 127.0.0.1:5432/test when it answers, else an embedded one), with one
 * finished generation so that real images, previews, ids and cursors exist, and stops it at the end.
 * It prints the summary as JSON and exits 1 when there were failures.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { parseArgs } from "node:util";
import {
  buildSchema, getNamedType, getNullableType, isEnumType, isInputObjectType, isInterfaceType, isLeafType, isListType, isNonNullType,
  isObjectType, isScalarType, isUnionType, type GraphQLArgument, type GraphQLCompositeType, type GraphQLField, type GraphQLInputType,
  type GraphQLNamedType, type GraphQLSchema,
} from "graphql";
import { PACKAGE_ROOT } from "../src/config.ts";

// ---------------------------------------------------------------------------------------------------
// Random streams

/** splitmix32: small, fast, and good enough to draw requests from. */
function splitmix32(state: number): () => number {
  let a = state | 0;
  return () => {
    a = (a + 0x9e3779b9) | 0;
    let t = a ^ (a >>> 16);
    t = Math.imul(t, 0x21f0aaad);
    t ^= t >>> 15;
    t = Math.imul(t, 0x735a2d97);
    t ^= t >>> 15;
    return (t >>> 0) / 4294967296;
  };
}

export class Rng {
  private readonly next: () => number;
  /** The stream `stream` of `seed`: request i draws from stream i, whatever the others drew. */
  constructor(seed: number, stream = 0) {
    const mix = splitmix32((seed >>> 0) ^ Math.imul(stream + 1, 0x85ebca6b));
    mix();
    this.next = splitmix32(Math.floor(mix() * 4294967296));
  }
  float(): number {
    return this.next();
  }
  /** An integer from lo to hi, both included. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }
  weighted<T>(items: readonly (readonly [number, T])[]): T {
    const total = items.reduce((s, [w]) => s + w, 0);
    let x = this.next() * total;
    for (const [w, v] of items) {
      if ((x -= w) < 0) return v;
    }
    return items[items.length - 1]![1];
  }
  hex(n: number): string {
    let s = "";
    for (let i = 0; i < n; i++) s += "0123456789abcdef"[this.int(0, 15)];
    return s;
  }
  uuid(): string {
    return `${this.hex(8)}-${this.hex(4)}-4${this.hex(3)}-a${this.hex(3)}-${this.hex(12)}`;
  }
}

// ---------------------------------------------------------------------------------------------------
// Hostile values

/** Strings that have broken servers before. None contains a leak needle (see NEEDLES). */
const NASTY = [
  "", " ", "\u0000", "a\u0000b", "\ud800", "\udfff", "x\udc00y", "\ud83d", "\ufeff", "\u202eevil", "💥🦄", "e\u0301\u0301\u0301", "\u2028\u2029",
  "\t\n\r", "\u001b[31m", "\u0007", "\uffff", "\ufffe", "%00", "%s%n%x", "' OR '1'='1", "\"; DROP TABLE generation; --", "${7*7}", "{{7*7}}",
  "<script>alert(1)</script>", "../../../etc/passwd", "\\", "\"", "NaN", "Infinity", "-Infinity", "-0", "1e309", "0x1F", "null", "undefined",
  "true", "[]", "{}", "__proto__", "constructor", "toString", "hasOwnProperty", "a big red circle in the centre, blue background",
];
const NAN_LIKE = ["NaN", "Infinity", "-Infinity", "1e309", "-1e309", "0x10", "1_000", " 1", "1 ", "", "null", "--1", "+1", "1e-400", "0b1", "١٢٣"];
const EDGE_INTS = [0, -1, 1, 2, 9, 10, 100, 101, 1024, 1025, 2147483647, -2147483648, 2147483648, -2147483649, 9007199254740991, 9007199254740993];
const EDGE_FLOATS = [0, -0, 0.5, 1, 1.5, 100, 100.0001, -1e-320, 1e308, Number.MAX_VALUE, Number.MIN_VALUE, 0.1 + 0.2];
/** Number literals as GraphQL and JSON see them (JSON has no NaN; these are its extremes). */
const BIG_LITERALS = ["99999999999999999999999999999", "-99999999999999999999999999999", "1e99999", "-1e99999", "1e-99999", "2147483648", "-0", "0.0000000000000000000001"];

export function unicodeChar(r: Rng): string {
  switch (r.int(0, 7)) {
    case 0: return String.fromCharCode(r.int(0, 31));
    case 1: return String.fromCharCode(r.int(0xd800, 0xdfff)); // a lone surrogate
    case 2: return String.fromCodePoint(r.int(0x10000, 0x10ffff));
    case 3: return String.fromCharCode(r.int(0x80, 0x2fff));
    case 4: return String.fromCharCode(r.pick([0xfffe, 0xffff, 0xfeff, 0x202e, 0x200b, 0x0085, 0x00a0]));
    default: return String.fromCharCode(r.int(0x20, 0x7e));
  }
}

export function hostileString(r: Rng): string {
  switch (r.weighted([[3, 0], [3, 1], [1, 2], [2, 3], [2, 4], [1, 5]] as const)) {
    case 0: return r.pick(NASTY);
    case 1: {
      let s = "";
      for (let i = r.int(1, 40); i > 0; i--) s += unicodeChar(r);
      return s;
    }
    case 2: { // long: past the prompt limit, up to about 60 KB
      const unit = r.chance(0.5) ? r.pick(NASTY) || "x" : unicodeChar(r);
      const len = r.pick([1000, 2001, 10_000, 30_000, 60_000]);
      return unit.repeat(Math.ceil(len / Math.max(1, unit.length))).slice(0, len);
    }
    case 3: return r.pick(NAN_LIKE);
    case 4: return r.pick(NASTY) + unicodeChar(r) + r.pick(NASTY);
    default: return r.pick(["circle", "a small yellow triangle on the left, purple background", "red", "square", "x"]);
  }
}

const b64 = (s: string) => Buffer.from(s).toString("base64");
const b64url = (s: string) => Buffer.from(s).toString("base64url");

/** Real ids, cursors and picture ids found on the server before fuzzing. */
export interface KnownIds {
  generations: string[];
  images: string[];
  imageUuids: string[];
  previewUuids: string[];
  /** Real picture URLs as the API gave them (path and query: a signed link stays valid). */
  pictureUrls: string[];
  cursors: string[];
}

export const NO_IDS: KnownIds = { generations: [], images: [], imageUuids: [], previewUuids: [], pictureUrls: [], cursors: [] };

export function globalId(r: Rng, ids: KnownIds): string {
  const real = [...ids.generations, ...ids.images];
  return r.weighted<() => string>([
    [3, () => (real.length ? r.pick(real) : b64(`Generation:${r.uuid()}`))],
    [2, () => b64(`Generation:${r.uuid()}`)],
    [2, () => b64(`${r.pick(["Generation", "Image", "Preview", "Node", "Query", "nope", "", "__proto__"])}:${r.pick([r.uuid(), hostileString(r), "", "1", "::"])}`)],
    [2, () => r.pick(["abc", "", "====", "R2VuZXJhdGlvbjp4", "Generation:" + r.uuid(), r.uuid(), "%", "\u0000", "A".repeat(r.int(1, 5000))])],
    [1, () => b64(hostileString(r))],
    [1, () => hostileString(r)],
    [1, () => (real.length ? r.pick(real).slice(0, -r.int(1, 4)) : "x")],
    [1, () => b64url(`Generation:${r.uuid()}`)],
  ])();
}

function cursor(r: Rng, ids: KnownIds): string {
  const dates = ["2026-01-01T00:00:00.000Z", "garbage", "+275760-09-13T00:00:00.000Z", "-271821-04-20T00:00:00.000Z", "0000-01-01", "2020-02-30",
    "", "1970-01-01", "9999-12-31T23:59:59.999Z", "Infinity", String(r.int(-1e9, 1e9))];
  const uuids = () => r.pick([r.uuid(), "not-a-uuid", "", "'; --", hostileString(r), ...ids.imageUuids]);
  return r.weighted<() => string>([
    [3, () => b64url(`${r.pick(dates)}|${uuids()}`)],
    [2, () => (ids.cursors.length ? r.pick(ids.cursors) : b64url(`${r.pick(dates)}|${r.uuid()}`))],
    [1, () => b64url(`${r.pick(dates)}|${uuids()}|${uuids()}`)],
    [1, () => b64(`${r.pick(dates)}|${uuids()}`)],
    [2, () => r.pick(["", "x", "====", "|", "MHw", "%%%", "\u0000"])],
    [1, () => hostileString(r)],
  ])();
}

// ---------------------------------------------------------------------------------------------------
// GraphQL documents from the schema

export const SCHEMA_FILE = path.join(PACKAGE_ROOT, "schema.graphql");
let schemaCache: GraphQLSchema | null = null;
export function loadSchema(): GraphQLSchema {
  schemaCache ??= buildSchema(readFileSync(SCHEMA_FILE, "utf8"));
  return schemaCache;
}

/** A GraphQL string literal (JSON's escapes are GraphQL's; a lone surrogate escape is a parse error, which is fine). */
export function gqlString(r: Rng, s: string): string {
  if (r.chance(0.05)) return `"""${s.replace(/"""/g, '\\"""')}"""`;
  if (r.chance(0.03)) return `"${s}"`; // raw: control characters and newlines inside a string are a syntax error
  return JSON.stringify(s);
}

/** One document being built: its variable declarations and their values. */
export class Doc {
  vars: string[] = [];
  values: Record<string, unknown> = {};
  n = 0;
  constructor(readonly r: Rng, readonly ids: KnownIds, readonly schema: GraphQLSchema) {}

  /** A variable standing for an argument of `type`: declared right or wrong, given a right or wrong value, or not given. */
  variable(type: GraphQLInputType, argName: string): string {
    const r = this.r;
    const name = `v${this.n++}`;
    const declared = r.chance(0.75) ? String(type) : r.pick(["Int", "Int!", "String", "Float", "Boolean", "ID!", "[ID!]!", "[Int]", "CreateGenerationInput", "ImageFormat", "GenerationStatus", "Nope", "Generation"]);
    this.vars.push(`$${name}: ${declared}${r.chance(0.1) ? ` = ${this.literal(type, argName, 0)}` : ""}`);
    if (r.chance(0.9)) this.values[name] = r.chance(0.6) ? this.json(type, argName, 0) : wrongJson(r);
    return `$${name}`;
  }

  /** A JSON value for a variable of `type`, mostly of the right shape. */
  json(type: GraphQLInputType, argName: string, depth: number): unknown {
    const r = this.r;
    if (r.chance(0.12) || depth > 4) return wrongJson(r);
    if (isNonNullType(type)) return r.chance(0.05) ? null : this.json(type.ofType, argName, depth + 1);
    if (isListType(type)) {
      if (r.chance(0.2)) return this.json(type.ofType, argName, depth + 1);
      return Array.from({ length: r.pick([0, 1, 2, 3, 150]) }, () => this.json(type.ofType, argName, depth + 1));
    }
    if (isEnumType(type)) return r.chance(0.7) ? r.pick(type.getValues()).name : r.pick(["png", "Nope", "", 1, "QUEUED ", null]);
    if (isInputObjectType(type)) {
      const out: Record<string, unknown> = {};
      for (const f of Object.values(type.getFields())) if (isNonNullType(f.type) ? r.chance(0.92) : r.chance(0.5)) out[f.name] = this.json(f.type, f.name, depth + 1);
      if (r.chance(0.1)) out[r.pick(["nope", "__proto__", "constructor", "id"])] = wrongJson(r);
      return out;
    }
    return this.scalarJson(type.name, argName);
  }

  scalarJson(scalar: string, argName: string): unknown {
    const r = this.r;
    if (scalar === "ID") return argName === "ids" || argName === "id" ? globalId(r, this.ids) : r.int(0, 9);
    if (argName === "after" || argName === "before") return cursor(r, this.ids);
    if (scalar === "Int") return r.chance(0.8) ? r.pick(EDGE_INTS) : r.int(-5, 20);
    if (scalar === "Float") return r.pick(EDGE_FLOATS);
    if (scalar === "Boolean") return r.chance(0.9) ? r.chance(0.5) : "true";
    return hostileString(r);
  }

  /** A literal for an argument of `type`, mostly of the right shape. */
  literal(type: GraphQLInputType, argName: string, depth: number): string {
    const r = this.r;
    if (r.chance(0.1) || depth > 5) return this.wrongLiteral();
    if (isNonNullType(type)) return r.chance(0.05) ? "null" : this.literal(type.ofType, argName, depth + 1);
    if (isListType(type)) {
      if (r.chance(0.2)) return this.literal(type.ofType, argName, depth + 1); // a single value where a list goes (coerced)
      return `[${Array.from({ length: r.pick([0, 1, 2, 3, 30]) }, () => this.literal(type.ofType, argName, depth + 1)).join(", ")}]`;
    }
    if (isEnumType(type)) return r.chance(0.75) ? r.pick(type.getValues()).name : r.pick(["png", "NOPE", '"PNG"', "true", "null", "_", "QUEUEDX"]);
    if (isInputObjectType(type)) {
      const parts: string[] = [];
      for (const f of Object.values(type.getFields())) {
        if (isNonNullType(f.type) ? r.chance(0.92) : r.chance(0.5)) parts.push(`${f.name}: ${this.literal(f.type, f.name, depth + 1)}`);
      }
      if (r.chance(0.08)) parts.push(`${r.pick(["nope", "prompt", "count"])}: ${this.wrongLiteral()}`); // unknown or duplicate
      return `{ ${parts.join(", ")} }`;
    }
    const name = type.name;
    if (name === "ID") return argName === "id" || argName === "ids" ? gqlString(r, globalId(r, this.ids)) : String(r.int(0, 9));
    if (argName === "after" || argName === "before") return gqlString(r, cursor(r, this.ids));
    if (name === "Int") return r.chance(0.15) ? r.pick(BIG_LITERALS) : String(r.chance(0.8) ? r.pick(EDGE_INTS) : r.int(-5, 20));
    if (name === "Float") return r.chance(0.2) ? r.pick(BIG_LITERALS) : String(r.pick(EDGE_FLOATS)).replace(/^(-?\d+)$/, "$1.0");
    if (name === "Boolean") return r.pick(["true", "false"]);
    return gqlString(r, hostileString(r));
  }

  wrongLiteral(): string {
    const r = this.r;
    return r.pick([
      () => "null", () => "$undeclared", () => "{}", () => "[]", () => '"5"', () => "1.5", () => "true", () => "NOPE", () => "[[[[1]]]]",
      () => r.pick(BIG_LITERALS), () => `{ a: { b: [${r.int(0, 9)}] } }`, () => gqlString(r, hostileString(r)), () => `"${"\\u0000".repeat(r.int(1, 4))}"`,
      () => '"\\uD800"', () => "0x1F", () => "01", () => "-", () => ".5", () => "1e", () => '"unterminated',
    ])();
  }

  /** Arguments of a field: most of them, sometimes an unknown one, a duplicate, or a variable. */
  args(args: readonly GraphQLArgument[]): string {
    const r = this.r;
    const parts: string[] = [];
    for (const a of args) {
      if (!(isNonNullType(a.type) ? r.chance(0.93) : r.chance(0.45))) continue;
      parts.push(`${a.name}: ${r.chance(0.2) ? this.variable(a.type, a.name) : this.literal(a.type, a.name, 0)}`);
    }
    if (r.chance(0.05)) parts.push(`${r.pick(["nope", "limit", "offset", "where", "id"])}: ${this.wrongLiteral()}`);
    if (r.chance(0.03) && args.length) parts.push(`${args[0]!.name}: ${this.literal(args[0]!.type, args[0]!.name, 0)}`);
    return parts.length ? `(${parts.join(", ")})` : r.chance(0.02) ? "()" : "";
  }

  /** A selection set on `type`, `depth` levels in, going at most `maxDepth` deep. */
  selection(type: GraphQLCompositeType, depth: number, maxDepth: number): string {
    const r = this.r;
    const items: string[] = [];
    const k = r.weighted([[6, 1], [5, 2], [3, 3], [1, 5]] as const);
    for (let i = 0; i < k; i++) {
      const what = r.weighted([[12, "field"], [1, "typename"], [1, "unknown"], [2, "inline"], [1, "alias"]] as const);
      if (what === "typename") items.push(r.chance(0.1) ? `t${this.n++}: __typename` : "__typename");
      else if (what === "unknown") items.push(r.pick(["nope", "password", "secret", "__nope", "id_", "Prompt"]) + (r.chance(0.3) ? " { id }" : ""));
      else if (what === "inline") {
        const targets = isObjectType(type) ? [type] : [...this.schema.getPossibleTypes(type)];
        const on = r.chance(0.85) && targets.length ? r.pick(targets) : r.pick(Object.values(this.schema.getTypeMap()).filter(isObjectType).filter((t) => !t.name.startsWith("__")));
        items.push(`... on ${on.name} { ${this.selection(on, depth, maxDepth)} }`);
      } else {
        if (isUnionType(type)) {
          items.push(`... on ${r.pick(type.getTypes()).name} { __typename }`);
          continue;
        }
        const f = r.pick(Object.values(type.getFields()));
        items.push(`${what === "alias" ? `a${this.n++}: ` : ""}${this.field(f, depth, maxDepth)}`);
      }
    }
    return items.join(" ");
  }

  field(f: GraphQLField<unknown, unknown>, depth: number, maxDepth: number): string {
    const r = this.r;
    const named = getNamedType(f.type);
    const head = `${f.name}${this.args(f.args)}`;
    if (isLeafType(named)) return r.chance(0.02) ? `${head} { x }` : head;
    if (depth + 1 >= maxDepth || r.chance(0.02)) return r.chance(0.9) ? `${head} { __typename }` : head; // a bare object field is a validation error
    return `${head} { ${this.selection(named as GraphQLCompositeType, depth + 1, maxDepth)} }`;
  }

  /** The operation's head with its variables. */
  head(kind: "query" | "mutation" | "subscription", name?: string): string {
    const vars = this.vars.length ? `(${this.vars.join(", ")})` : "";
    return `${kind}${name ? ` ${name}` : ""}${vars}`;
  }
}

export function wrongJson(r: Rng): unknown {
  return r.pick<() => unknown>([
    () => hostileString(r), () => r.pick(EDGE_INTS), () => r.pick(EDGE_FLOATS), () => true, () => null, () => [], () => ({}),
    () => r.pick(NAN_LIKE), () => [[[[r.int(0, 9)]]]], () => ({ __proto__: { polluted: true } }), () => JSON.parse('{"__proto__": {"polluted": true}}'),
    () => ({ a: { b: { c: [1, "2", null] } } }), () => Array.from({ length: r.int(1, 300) }, (_, i) => i),
  ])();
}

// ---------------------------------------------------------------------------------------------------
// Requests

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

// ---------------------------------------------------------------------------------------------------
// Sending

export interface FuzzResponse {
  /** The HTTP status, or "timeout" / "no-response" / "client-error". */
  status: number | "timeout" | "no-response" | "client-error";
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  ms: number;
  /** The network error, for no-response. */
  error?: string;
}

/** Read at most this much of a body (GraphiQL's page is 9 MB; the rest is not checked). */
const MAX_READ = 1 << 20;

/**
 * Sends one request. A reset on a kept-alive socket is retried once on a new connection: the server may
 * close an idle socket just as the client reuses it (Node's documented race), which says nothing about
 * the request.
 */
async function send(base: URL, req: FuzzRequest, o: { timeoutMs: number; streamMs: number; agent: http.Agent }): Promise<FuzzResponse> {
  const first = await sendOnce(base, req, o.agent, o);
  if (first.status === "no-response" && first.reusedSocket) return sendOnce(base, req, false, o);
  return first;
}

function sendOnce(base: URL, req: FuzzRequest, agent: http.Agent | false, o: { timeoutMs: number; streamMs: number }): Promise<FuzzResponse & { reusedSocket?: boolean }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const done = (s: Omit<FuzzResponse, "ms">) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ...s, ms: Math.round(performance.now() - t0) });
    };
    const body = req.body === undefined ? undefined : Buffer.isBuffer(req.body) ? req.body : Buffer.from(req.body, "utf8");
    const headers: Record<string, string> = { ...req.headers };
    if (body && req.chunked) headers["transfer-encoding"] = "chunked";
    else if (body) headers["content-length"] = String(body.length);
    let out: http.ClientRequest;
    try {
      out = http.request({ host: base.hostname, port: base.port, method: req.method, path: req.path, headers, agent });
    } catch (e) {
      done({ status: "client-error", headers: {}, body: Buffer.alloc(0), error: (e as Error).message });
      return;
    }
    timer = setTimeout(() => {
      out.destroy();
      done({ status: "timeout", headers: {}, body: Buffer.alloc(0) });
    }, o.timeoutMs);
    out.on("response", (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const type = String(res.headers["content-type"] ?? "");
      const finish = () => done({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
      // A stream (a subscription) is read for a moment, then dropped.
      const streamTimer = type.startsWith("text/event-stream") || type.startsWith("multipart/mixed")
        ? setTimeout(() => {
          finish();
          res.destroy();
        }, o.streamMs)
        : undefined;
      res.on("data", (c: Buffer) => {
        chunks.push(c);
        size += c.length;
        if (size >= MAX_READ) {
          finish();
          res.destroy();
        }
      });
      const end = () => {
        clearTimeout(streamTimer);
        finish();
      };
      res.on("end", end);
      res.on("error", end);
      res.on("close", end);
    });
    out.on("error", (e: NodeJS.ErrnoException) => {
      const reused = out.reusedSocket && (e.code === "ECONNRESET" || e.code === "EPIPE");
      if (settled || !reused) {
        done({ status: "no-response", headers: {}, body: Buffer.alloc(0), error: e.code ?? e.message });
        return;
      }
      settled = true;
      clearTimeout(timer);
      resolve({ status: "no-response", headers: {}, body: Buffer.alloc(0), error: e.code, ms: 0, reusedSocket: true });
    });
    if (body && req.chunked) {
      const half = body.length >> 1;
      out.write(body.subarray(0, half));
      out.end(body.subarray(half));
    } else out.end(body);
  });
}

// ---------------------------------------------------------------------------------------------------
// Checks

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

// ---------------------------------------------------------------------------------------------------
// The run

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

const excerpt = (s: string, n: number) => (s.length > n ? `${s.slice(0, n)}… (${s.length} characters)` : s);

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

const bump = (m: Record<string, number>, k: string) => {
  m[k] = (m[k] ?? 0) + 1;
};

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

// ---------------------------------------------------------------------------------------------------
// A server to fuzz

export interface FuzzServer {
  /** Base URL (http://localhost:port/). */
  url: string;
  /** Error lines the server logged (masked errors keep their detail here), the first few. */
  errors: string[];
  errorCount(): number;
  close(): Promise<void>;
}

/** The PostgreSQL the CLI uses: DATABASE_URL's, else 127.0.0.1:5432/test when it answers, else an embedded one (undefined). */
async function defaultDatabaseServer(): Promise<string | undefined> {
  if (process.env.DATABASE_URL) return process.env.DATABASE_URL;
  const local = "postgresql://postgres@127.0.0.1:5432/test";
  const pg = (await import("pg")).default;
  const c = new pg.Client({ connectionString: local, connectionTimeoutMillis: 2000 });
  try {
    await c.connect();
    await c.end();
    return local;
  } catch {
    return undefined;
  }
}

/**
 * A server ("all": API and worker) on a fresh test database, as the tests start one, with one finished
 * generation (2 images, previews) so that real ids, cursors, images and previews exist.
 * `database`: a PostgreSQL server URL; default as the tests (DATABASE_URL, else embedded).
 */
export async function startFuzzServer(o: { database?: string } = {}): Promise<FuzzServer> {
  const h = await import("../test/server-helpers.ts");
  const db = await h.createTestDatabase(o.database);
  const errors: string[] = [];
  let count = 0;
  const log = (line: string, fields?: { level?: string; err?: unknown; event?: string }) => {
    if (fields?.event === "http_request") return;
    if (!(/request failed|graphql-yoga/.test(line) || fields?.level === "error" || fields?.err !== undefined)) return;
    count++;
    if (errors.length < 50) errors.push(excerpt(line.split("\n").slice(0, 3).join(" | "), 400));
  };
  let app;
  try {
    app = await h.startTestApp(db.url, "all", { log: log as (line: string) => void });
    const g = await h.create(app, { prompt: "a big red circle in the centre, blue background", seed: 7, count: 2 });
    await h.eventsOverSse(app, g.id);
  } catch (e) {
    await app?.close();
    await db.drop();
    throw e;
  }
  const started = app;
  return {
    url: urls(started.url!).base.toString(),
    errors,
    errorCount: () => count,
    async close() {
      await started.close();
      await db.drop();
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// CLI

// Run after this module has finished loading (not in a top-level await): scripts/fuzz-ws.ts imports
// this module, and a top-level await here would leave that import waiting for the CLI to end.
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
