/**
 * What a request may ask for, checked before anything runs: graphql-armor's depth, alias, token and
 * directive limits (maintained plugins), and a cost limit that weighs the fields that cost real work.
 * The cost rule is ours because graphql-armor's cost limit has no per-field weights or list sizes, and
 * one `dataUrl` (an encode) must not count as one `id`. Every refusal is a GraphQL error with
 * `extensions.code` QUERY_TOO_COMPLEX and no execution at all.
 */
import type { Plugin } from "@envelop/core";
import { maxAliasesPlugin } from "@escape.tech/graphql-armor-max-aliases";
import { maxDepthPlugin } from "@escape.tech/graphql-armor-max-depth";
import { maxDirectivesPlugin } from "@escape.tech/graphql-armor-max-directives";
import { maxTokensPlugin } from "@escape.tech/graphql-armor-max-tokens";
import {
  GraphQLError, Kind, type DocumentNode, type FieldNode, type FragmentDefinitionNode, type SelectionSetNode, type ValidationContext, type ValueNode,
} from "graphql";

export interface QueryLimits {
  depth: number;
  aliases: number;
  tokens: number;
  directives: number;
  cost: number;
}

export const DEFAULT_LIMITS: QueryLimits = { depth: 12, aliases: 20, tokens: 2_000, directives: 10, cost: 5_000 };

/** The body of a GraphQL request over HTTP, and of a graphql-ws message, at most (bytes). */
export const MAX_BODY_BYTES = 64 * 1024;

/**
 * What a field costs, times every list around it. Plain fields cost 1; these cost the work they do:
 * an encode for `dataUrl`, a transcode when `url` asks for a size, a mosaic drawn and encoded.
 */
const FIELD_COST: Record<string, number> = { dataUrl: 50, mosaic: 20 };
const TRANSCODED_URL = 10;
/** Lists without a page size: at most this many items (9 images per generation, 9 previews per set). */
const LIST_SIZE: Record<string, number> = { images: 9, previews: 9, latestPreviews: 9, nodes: 100 };
/** A connection without `first`/`last` returns this many. */
const DEFAULT_PAGE = 20;

/** A refusal: coded, and HTTP 400 whatever the client's Accept header (yoga reads extensions.http). */
const tooComplex = (message: string) => new GraphQLError(message.replace(/^Syntax Error: /, ""), { extensions: { code: "QUERY_TOO_COMPLEX", http: { status: 400 } } });

function intArg(field: FieldNode, name: string, variables: Record<string, unknown>): number | null {
  const arg = field.arguments?.find((a) => a.name.value === name);
  if (!arg) return null;
  const v: ValueNode = arg.value;
  if (v.kind === Kind.INT) return Number(v.value);
  if (v.kind === Kind.VARIABLE) {
    const x = variables[v.name.value];
    return typeof x === "number" ? x : null;
  }
  return null;
}

function multiplier(field: FieldNode, variables: Record<string, unknown>): number {
  const name = field.name.value;
  if (name === "generations") return Math.max(1, intArg(field, "first", variables) ?? intArg(field, "last", variables) ?? DEFAULT_PAGE);
  if (name === "nodes") {
    const ids = field.arguments?.find((a) => a.name.value === "ids")?.value;
    if (ids?.kind === Kind.LIST) return Math.max(1, ids.values.length);
    const given = ids?.kind === Kind.VARIABLE ? variables[ids.name.value] : undefined;
    return Array.isArray(given) ? Math.max(1, given.length) : LIST_SIZE.nodes!;
  }
  return LIST_SIZE[name] ?? 1;
}

function fieldCost(field: FieldNode): number {
  const name = field.name.value;
  if (name === "url" && field.arguments?.some((a) => a.name.value === "size" || a.name.value === "format")) return TRANSCODED_URL;
  return FIELD_COST[name] ?? 1;
}

/**
 * The cost of a selection set, every fragment spread counted. Each fragment's cost is computed once
 * and reused (a fragment that spreads another twice, 23 deep, cost 2^23 walks before: 16 s of a
 * blocked server for a 1 KB request); a cycle counts 0 (validation refuses cycles anyway).
 */
export function selectionCost(
  set: SelectionSetNode | undefined, fragments: Record<string, FragmentDefinitionNode>, variables: Record<string, unknown>, memo = new Map<string, number>(),
): number {
  if (!set) return 0;
  let total = 0;
  for (const s of set.selections) {
    if (s.kind === Kind.FIELD) {
      total += fieldCost(s) + multiplier(s, variables) * selectionCost(s.selectionSet, fragments, variables, memo);
    } else if (s.kind === Kind.INLINE_FRAGMENT) {
      total += selectionCost(s.selectionSet, fragments, variables, memo);
    } else {
      const name = s.name.value;
      const frag = fragments[name];
      if (!frag) continue;
      if (!memo.has(name)) {
        memo.set(name, 0);
        memo.set(name, selectionCost(frag.selectionSet, fragments, variables, memo));
      }
      total += memo.get(name)!;
    }
  }
  return total;
}

/**
 * The refusal for an operation that costs more than `max`, or null. Run with the request's variables,
 * at execution (and subscription) time: validation has no variables (and yoga caches it per
 * document), so `first: $n` counted as the default page whatever n was, and a 421-byte request with
 * n = 100 and ten 1024-pixel mosaics per item ran for 59 s.
 */
export function costError(args: { document: DocumentNode; variableValues?: Record<string, unknown> | null; operationName?: string | null }, max: number): GraphQLError | null {
  const fragments: Record<string, FragmentDefinitionNode> = {};
  for (const d of args.document.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments[d.name.value] = d;
  for (const d of args.document.definitions) {
    if (d.kind !== Kind.OPERATION_DEFINITION || (args.operationName && d.name?.value !== args.operationName)) continue;
    // A variable the request leaves out takes its default from the operation.
    const variables: Record<string, unknown> = {};
    for (const v of d.variableDefinitions ?? []) if (v.defaultValue?.kind === Kind.INT) variables[v.variable.name.value] = Number(v.defaultValue.value);
    Object.assign(variables, args.variableValues ?? {});
    const cost = selectionCost(d.selectionSet, fragments, variables);
    if (cost > max) return tooComplex(`query cost ${cost} is over the limit of ${max}: ask for fewer items, aliases or encoded images`);
  }
  return null;
}

/** The plugins that enforce `limits` in yoga (and, through yoga's envelop, over graphql-ws). */
export function limitPlugins(limits: QueryLimits = DEFAULT_LIMITS): Plugin[] {
  // exposeLimits: the message names the limit and what was found, which helps an honest client. The
  // validation-time limits report a coded error (armor's own would be thrown without a code); the
  // token limit acts in the parser, where throwing is the only way to stop (yoga codes it
  // GRAPHQL_PARSE_FAILED).
  const report = { propagateOnRejection: false, exposeLimits: true, onReject: [(ctx: ValidationContext | null, e: GraphQLError) => ctx?.reportError(tooComplex(e.message))] };
  // The same check before a query or mutation runs and before a subscription starts.
  const refuseCostly = ({ args, setResultAndStopExecution }: { args: Parameters<typeof costError>[0]; setResultAndStopExecution: (r: { errors: GraphQLError[] }) => void }) => {
    const e = costError(args, limits.cost);
    if (e) setResultAndStopExecution({ errors: [e] });
  };
  const cost: Plugin = { onExecute: refuseCostly, onSubscribe: refuseCostly };
  return [
    maxTokensPlugin({ n: limits.tokens, propagateOnRejection: true, exposeLimits: true }) as Plugin,
    // Introspection counts too: its type chains are where deep queries come from.
    maxDepthPlugin({ n: limits.depth, ...report, flattenFragments: true, ignoreIntrospection: false }) as Plugin,
    maxAliasesPlugin({ n: limits.aliases, ...report }) as Plugin,
    maxDirectivesPlugin({ n: limits.directives, ...report }) as Plugin,
    cost,
  ];
}
