/**
 * Telling "the database is not there right now" (a restart, a failover, a dropped connection) from
 * every other error: the first is retried by workers and reported to clients as a retriable
 * UNAVAILABLE; anything else is a bug or bad data and is not retried.
 */

/** Driver-adapter error kinds (Prisma 7) that mean the server could not be reached or went away. */
const ADAPTER_KINDS = new Set(["DatabaseNotReachable", "ConnectionClosed", "SocketTimeout", "DatabaseDoesNotExist", "TooManyConnections"]);
/** PostgreSQL SQLSTATEs for shutdown, crash recovery and lost connections (classes 08 and 57P). */
const SQLSTATES = /^(08\d{3}|57P0[1-4]|53300)$/;
const NODE_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "ENOTFOUND", "EHOSTUNREACH"]);
const PRISMA_CODES = new Set(["P1001", "P1002", "P1008", "P1017"]);

export function isDatabaseUnavailable(e: unknown, depth = 0): boolean {
  if (!e || typeof e !== "object" || depth > 4) return false;
  const err = e as { code?: unknown; meta?: { driverAdapterError?: { cause?: { kind?: string; originalCode?: string; code?: string } } }; cause?: unknown; message?: unknown };
  const code = typeof err.code === "string" ? err.code : "";
  if (PRISMA_CODES.has(code) || NODE_CODES.has(code) || SQLSTATES.test(code)) return true;
  const cause = err.meta?.driverAdapterError?.cause;
  if (cause) {
    if (cause.kind && ADAPTER_KINDS.has(cause.kind)) return true;
    const sqlstate = cause.originalCode ?? cause.code ?? "";
    if (SQLSTATES.test(sqlstate) || NODE_CODES.has(sqlstate)) return true;
  }
  // pg's own errors when the socket closes under a query.
  if (typeof err.message === "string" && /Connection terminated|connection is closed|Client has encountered a connection error/i.test(err.message)) return true;
  return isDatabaseUnavailable(err.cause, depth + 1);
}

/**
 * One line for the log from a database error: the last line of its message (Prisma's messages open
 * with a code frame and end with the cause), at most 200 characters.
 */
export function errorSummary(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).trim().split("\n").pop()!.slice(0, 200);
}
