/**
 * Every failure a caller can act on carries a stable machine-readable code; the GraphQL layer
 * passes it through as `extensions.code`, the CLI prints it.
 */
export type ErrorCode =
  | "MODEL_INVALID"
  | "MODEL_NOT_FOUND"
  | "BAD_INPUT"
  | "INFERENCE_FAILED"
  /** The database a process was pointed at (DATABASE_URL) cannot be used: not there, refused, no such database. */
  | "DATABASE_UNAVAILABLE";

export class MosaicError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "MosaicError";
  }
}

export function badInput(message: string): MosaicError {
  return new MosaicError("BAD_INPUT", message);
}
