/** GraphQL documents from the schema (schema.graphql): random selections, arguments and variables, right and wrong. */
import { readFileSync } from "node:fs";
import path from "node:path";
import {
  buildSchema, getNamedType, isEnumType, isInputObjectType, isLeafType, isListType, isNonNullType, isObjectType, isUnionType,
  type GraphQLArgument, type GraphQLCompositeType, type GraphQLField, type GraphQLInputType, type GraphQLSchema,
} from "graphql";
import { PACKAGE_ROOT } from "../../src/engine/settings.ts";
import type { Rng } from "./rng.ts";
import { BIG_LITERALS, cursor, EDGE_FLOATS, EDGE_INTS, globalId, hostileString, NAN_LIKE, type KnownIds } from "./values.ts";

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
