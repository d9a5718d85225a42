/** GraphQL errors with a machine-readable `extensions.code`, and the mapping from engine errors. */
import { GraphQLError } from "graphql";
import { errorSummary, isDatabaseUnavailable } from "../db/errors.ts";
import { MosaicError } from "../engine/errors.ts";

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
export function maskError(log: (line: string) => void) {
  return (error: unknown): Error => {
    if (error instanceof GraphQLError && error.extensions?.code && !error.originalError) return error;
    const original = error instanceof GraphQLError ? error.originalError : error;
    if (error instanceof GraphQLError && original instanceof GraphQLError && original.extensions?.code) return error;
    if (original instanceof MosaicError) return codedError(original.code, original.message);
    if (isDatabaseUnavailable(original)) {
      log(`mosaic: request failed, database unavailable: ${errorSummary(original)}`);
      return withPath(unavailable(), error);
    }
    if (error instanceof GraphQLError && !original) return error;
    log(`mosaic: request failed: ${original instanceof Error ? original.stack : String(original)}`);
    return withPath(codedError("INTERNAL", "internal error"), error);
  };
}

function withPath(e: GraphQLError, from: unknown): GraphQLError {
  return from instanceof GraphQLError && from.path ? new GraphQLError(e.message, { path: from.path, extensions: e.extensions }) : e;
}

