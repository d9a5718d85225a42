/**
 * Structured logs. Every module logs through a plain function, `log(msg, fields?)`, so a test can pass
 * a silent one or collect the lines; the server passes one backed by pino: one JSON object per line on
 * stderr when stderr is not a terminal (containers, log shippers), pino-pretty's readable lines on a
 * terminal, at the level LOG_LEVEL names (default info). Fields such as `generationId`, `event` and
 * `requestId` become keys of the JSON object; `level` picks the level; `err` is serialized with its
 * stack and its cause.
 */
import { hostname } from "node:os";
import pino, { type Logger } from "pino";
import pretty from "pino-pretty";
import { badInput } from "../engine/errors.ts";

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LogFields {
  /** The level of this line (default info, or error when `err` is given). */
  level?: Exclude<LogLevel, "silent">;
  /** An error: logged with its stack and its cause. */
  err?: unknown;
  [key: string]: unknown;
}

/** What modules log through. A function of one string argument is one too (fields are then dropped). */
export type LogFn = (msg: string, fields?: LogFields) => void;

export function logLevel(value = process.env.LOG_LEVEL): LogLevel {
  const v = (value === undefined || value === "" ? "info" : value).toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(v)) throw badInput(`LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")} (got "${value}")`);
  return v as LogLevel;
}

export interface LoggerOptions {
  level?: LogLevel;
  /** Readable lines instead of JSON (default: when stderr is a terminal). */
  pretty?: boolean;
  /** Fields on every line (e.g. the process's role). */
  base?: Record<string, unknown>;
}

/** A pino logger writing to stderr, synchronously (nothing is lost when the process exits). */
export function createLogger(o: LoggerOptions = {}): Logger {
  const level = o.level ?? logLevel();
  const readable = o.pretty ?? Boolean(process.stderr.isTTY);
  const options = { level, base: { pid: process.pid, hostname: hostname(), ...o.base }, timestamp: pino.stdTimeFunctions.isoTime };
  if (readable) {
    return pino(options, pretty({ destination: 2, sync: true, colorize: Boolean(process.stderr.isTTY), translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname,role" }));
  }
  return pino(options, pino.destination({ dest: 2, sync: true }));
}

/** The `log` function modules take, writing to `logger`. The "mosaic: " prefix of the old plain lines is dropped. */
export function logTo(logger: Logger): LogFn {
  return (msg, fields) => {
    const { level, ...rest } = fields ?? {};
    const at = level ?? (rest.err !== undefined ? "error" : "info");
    logger[at](rest, msg.startsWith("mosaic: ") ? msg.slice(8) : msg);
  };
}

/** A log function that adds `fields` to every line (e.g. a request id). */
export function withFields(log: LogFn, fields: Record<string, unknown>): LogFn {
  return (msg, more) => log(msg, { ...fields, ...more });
}
