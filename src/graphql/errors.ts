/** GraphQL errors with a machine-readable `extensions.code`, and the mapping from engine errors. */
import { GraphQLError } from "graphql";
import { MosaicError } from "../engine/errors.ts";

export function codedError(code: string, message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code } });
}

export function notFound(what: string, id: string): GraphQLError {
  return codedError("NOT_FOUND", `no ${what} with id ${id}`);
}

/** Engine errors keep their code; anything else is reported without internals. */
export function toGraphQLError(e: unknown): GraphQLError {
  if (e instanceof GraphQLError) return e;
  if (e instanceof MosaicError) return codedError(e.code, e.message);
  return codedError("INTERNAL", "internal error");
}
