/** mosaic generate | serve | worker */
import { MosaicError } from "./engine/errors.ts";
import { GENERATE_HELP, runGenerate } from "./cli/generate.ts";

const HELP = `Usage: mosaic <command> [options]

Commands:
  generate "<prompt>"   generate images into files (mosaic generate --help)
  serve                 the GraphQL server, with a worker in the same process (mosaic serve --help)
  worker                a worker only
  migrate               apply database migrations and exit
  keys                  create, list and revoke API keys (mosaic keys --help)

Environment:
  PORT                  HTTP port of serve (default 4000)
  HOST                  address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 for all)
  MOSAIC_AUTH           off (default: keys optional) or required (every operation needs an API key)
  MOSAIC_QUOTA_ACTIVE   generations one key (or address, without keys) may have queued or running (default 4)
  MOSAIC_QUOTA_IMAGES_PER_HOUR  images one key (or address) may create per hour (default 360)
  MOSAIC_QUEUE_LIMIT    queued generations the server accepts before QUEUE_FULL (default 1000)
  MOSAIC_URL_TTL_SECONDS  signed image links live between this and twice this (default 3600)
  MOSAIC_WS_MAX_SUBSCRIPTIONS  operations one graphql-ws connection may run at once (default 20)
  MOSAIC_RETENTION_DAYS  delete generations (images, previews) that ended this many days ago (default: keep)
  MOSAIC_GRAPHIQL       0: no GraphiQL page and no introspection; 1: both (default: on, off with MOSAIC_AUTH=required)
  MOSAIC_TRUST_PROXY    1: believe X-Forwarded-Host/-Proto (only behind a reverse proxy that sets them)
  MOSAIC_PUBLIC_URL     the address clients reach Mosaic at (https://host[/prefix]): image URLs are built on it
  MOSAIC_CORS_ORIGINS   other origins whose pages may call the API, comma-separated (default: none)
  DATABASE_URL          PostgreSQL to use; unset: an embedded PostgreSQL in MOSAIC_DATA_DIR
  MOSAIC_DATA_DIR       where the embedded database keeps its data (default ./data)
  MOSAIC_EMBEDDED_PG_PORT  the embedded database's port on 127.0.0.1 (default: 54329 if free, else any free port)
  MOSAIC_MODEL          model folder (default: models/mosaic-shapes)
  MOSAIC_PROVIDER       cpu, webgpu or cuda (default: cpu; falls back to cpu)
  MOSAIC_WORKER_BATCH   the most images a worker decodes together (default 16)
  MOSAIC_LEASE_SECONDS  a running job whose worker is silent this long is requeued and resumed (default 15)
  MOSAIC_MAX_ATTEMPTS   a job lost this many times ends FAILED with WORKER_LOST (default 3)
  MOSAIC_THREADS        threads for the text encoder and decoder steps (default: one per core; 0: ONNX Runtime's own)
  MOSAIC_PREVIEW_THREADS  threads for the preview decoder beside the decoder steps (default: one per core)
  MOSAIC_PREVIEW_SHARE    most of the time previews may spend decoding, 0.01-1 (default: 0.25)
  MOSAIC_HEALTH_FILE    a worker touches this file at every heartbeat (container health checks)
  MOSAIC_METRICS_PORT   port of /metrics, /livez, /readyz and /health for mosaic worker (default 9464, or a
                        free port if that one is taken); serve answers them on PORT, and here too when set
  LOG_LEVEL             trace, debug, info (default), warn, error, fatal or silent; logs are JSON lines on
                        stderr, or readable lines when stderr is a terminal
`;

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case "generate":
      return runGenerate(rest);
    // The server roles load the database stack only when asked for.
    case "serve":
      return (await import("./cli/serve.ts")).runServe(rest);
    case "worker":
      return (await import("./cli/serve.ts")).runWorker(rest);
    case "migrate":
      return (await import("./cli/serve.ts")).runMigrate();
    case "keys":
      return (await import("./cli/keys.ts")).runKeys(rest);
    case undefined:
    case "-h":
    case "--help":
    case "help":
      process.stdout.write(`${HELP}\n${GENERATE_HELP}\n${(await import("./cli/serve.ts")).SERVE_HELP}`);
      return;
    default:
      throw new MosaicError("BAD_INPUT", `unknown command "${command}" (mosaic --help lists them)`);
  }
}

main(process.argv.slice(2)).catch((e: unknown) => {
  let code = 1;
  if (e instanceof MosaicError) {
    process.stderr.write(`mosaic: ${e.message} [${e.code}]\n`);
    if (e.code === "BAD_INPUT") code = 2;
  } else if (e instanceof TypeError && (e as NodeJS.ErrnoException).code?.startsWith("ERR_PARSE_ARGS")) {
    process.stderr.write(`mosaic: ${e.message} [BAD_INPUT]\n`);
    code = 2;
  } else {
    // A rejection with no value (some libraries reject that way) still says something readable.
    const what = e instanceof Error ? e.stack : e === undefined || e === null ? "an operation failed without giving a reason" : String(e);
    process.stderr.write(`mosaic: unexpected error: ${what}\n`);
  }
  // Exit explicitly with the code: a failed start may leave handles (timers, a half-open pool) that would keep the process alive.
  process.exit(code);
});
