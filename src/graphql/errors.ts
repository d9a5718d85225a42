/** GraphQL errors with a machine-readable `extensions.code`, and the mapping from engine errors. */
import { PothosError, PothosValidationError } from "@pothos/core";
import { GraphQLError } from "graphql";
import type { Plugin } from "graphql-yoga";
import { errorSummary, isDatabaseUnavailable } from "../db/errors.ts";
import { MosaicError } from "../engine/errors.ts";
import type { LogFn } from "../ops/log.ts";

export function codedError(code: string, message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code } });
}

export function notFound(what: string, id: string): GraphQLError {
  return codedError("NOT_FOUND", `no ${what} with id ${id}`);
}

export const unavailable = () => codedError("UNAVAILABLE", "the database is unavailable for a moment; retry shortly");

/** Engine errors keep their code; a database outage is UNAVAILABLE (retriable); anything else is reported without internals. */
export function toGraphQLError(e: unknown): GraphQLError {
  if (e instanceof GraphQLError) return e.extensions?.code ? e : toGraphQLError(e.originalError ?? null);
  if (e instanceof MosaicError) return codedError(e.code, e.message);
  if (isDatabaseUnavailable(e)) return unavailable();
  return codedError("INTERNAL", "internal error");
}

/**
 * yoga's error masking: every error a client sees has a code and a plain message. Errors we raised
 * on purpose pass through; the rest are logged here with their detail (the log keeps the stack and
 * driver text, clients never get them).
 */
export function maskError(log: LogFn) {
  return (error: unknown): Error => {
    if (error instanceof GraphQLError && error.extensions?.code && !error.originalError) return error;
    const original = error instanceof GraphQLError ? error.originalError : error;
    if (error instanceof GraphQLError && original instanceof GraphQLError && original.extensions?.code) return error;
    // Pothos's errors are GraphQLErrors too, so they come before the rule below.
    // A malformed or mistyped global id ("Invalid global ID", "is not of type"): the client's input.
    if (original instanceof PothosValidationError) return withPath(codedError("BAD_INPUT", original.message), error);
    // The relay plugin resolving a global id that names an interface ("Node:1"): also the input, but
    // Pothos's words for it ("Expected ref to resolve to a Object type, but got Interface") are about
    // its own internals.
    if (original instanceof PothosError) {
      log(`mosaic: request refused: ${original.message}`);
      return withPath(codedError("BAD_INPUT", "invalid id"), error);
    }
    // A scalar refusing a variable's value (graphql-js's "Int cannot represent …", "ID cannot represent …").
    if (error instanceof GraphQLError && original instanceof GraphQLError) return withCode(error, "BAD_INPUT");
    if (original instanceof MosaicError) return codedError(original.code, original.message);
    if (isDatabaseUnavailable(original)) {
      log(`mosaic: request failed, database unavailable: ${errorSummary(original)}`);
      return withPath(unavailable(), error);
    }
    // graphql-js's own input errors (a variable or argument of the wrong type, a null where none
    // may be) carry no code: they are the client's input.
    if (error instanceof GraphQLError && !original) return withCode(error, "BAD_INPUT");
    log(`mosaic: request failed: ${original instanceof Error ? original.message : String(original)}`, { level: "error", err: original });
    return withPath(codedError("INTERNAL", "internal error"), error);
  };
}

function withCode(e: GraphQLError, code: string): GraphQLError {
  return new GraphQLError(e.message, { nodes: e.nodes, path: e.path, extensions: { ...e.extensions, code } });
}

function withPath(e: GraphQLError, from: unknown): GraphQLError {
  return from instanceof GraphQLError && from.path ? new GraphQLError(e.message, { path: from.path, extensions: e.extensions }) : e;
}

/**
 * yoga answers a body that is not JSON with the parser's own message in `extensions.originalError`
 * ("Unexpected end of JSON input, "{"query":" is not valid JSON"): JavaScript's text, and the body
 * echoed back (60 KB of it for a 60 KB body). These errors never reach `maskError`; this drops the
 * detail from every error of a plain (not streamed) result before it is written.
 */
export const withoutOriginalErrors: Plugin = {
  onResultProcess({ result, setResult }) {
    if (Array.isArray(result) || Symbol.asyncIterator in result) return;
    if (!result.errors?.some((e) => e.extensions && "originalError" in e.extensions)) return;
    setResult({
      ...result,
      errors: result.errors.map((e) => {
        if (!e.extensions || !("originalError" in e.extensions)) return e;
        const { originalError: _, http, ...extensions } = e.extensions as { originalError?: unknown; http?: { status?: number } };
        // yoga answers 400 only while the detail is there (else 200 to an application/json client,
        // graphql-over-http's legacy rule); the status is kept without the rule's `spec` mark.
        return new GraphQLError(e.message, { nodes: e.nodes, path: e.path, extensions: { ...extensions, ...(http?.status ? { http: { status: http.status } } : {}) } });
      }),
    });
  },
};
