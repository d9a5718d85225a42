/**
 * One HTTP server for everything: GraphQL over HTTP and SSE (yoga), graphql-ws on the same path,
 * GraphiQL served offline, picture routes, and /metrics, /livez, /readyz and /health (src/http/ops.ts).
 * Every request gets an id (x-request-id, a proxy's when sane) and one log line.
 */
import { readFileSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { renderGraphiQL } from "@graphql-yoga/render-graphiql";
import { execute, getOperationAST, GraphQLError, NoSchemaIntrospectionCustomRule, subscribe, type DocumentNode } from "graphql";
import { createYoga } from "graphql-yoga";
import { usePrometheus } from "@graphql-yoga/plugin-prometheus";
import { useServer } from "graphql-ws/use/ws";
import { WebSocketServer } from "ws";
import { viewerOf, type Viewer } from "../auth/viewer.ts";
import { requestIdOf, serveOps, trackRequest, type OpsTarget } from "../http/ops.ts";
import { servePicture } from "../http/pictures.ts";
import { withFields } from "../ops/log.ts";
import type { AppContext, Context } from "./context.ts";
import { EXAMPLE_TABS } from "./examples.ts";
import { schema } from "./schema.ts";
import { maskError, withoutOriginalErrors } from "./errors.ts";
import { createLoaders } from "./loaders.ts";
import { limitPlugins, MAX_BODY_BYTES } from "./limits.ts";

export const GRAPHQL_PATH = "/graphql";
const ANONYMOUS: Viewer = { key: null, address: "unknown" };
/**
 * The web app (web/, built by `npm install` into web/dist): its index.html answers `/`, `/history` and
 * `/g/<id>` (permalinks), its files `/assets/*` and the few at the top of web/dist (favicon). Where it is
 * not built (an install with --ignore-scripts, the container image), `/` serves the old single-file page.
 */
const WEB_DIST = new URL("../../web/dist/", import.meta.url);
const FALLBACK_PAGE = readFileSync(new URL("../http/page.html", import.meta.url), "utf8");
const APP_ROUTE = /^\/(?:history|g\/[^/]{1,200})?$/;
const APP_FILE = /^\/(?:assets\/)?[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;
const APP_TYPES: Record<string, string> = {
  ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
  ".ico": "image/x-icon", ".json": "application/json", ".webmanifest": "application/manifest+json", ".txt": "text/plain; charset=utf-8",
  ".woff2": "font/woff2", ".map": "application/json",
};
/** Same origin only: scripts, styles and connections (HTTP and graphql-ws); pictures also as data: and blob: URLs. */
const APP_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

/** Answers the app's pages and files; false when `path` is neither (or not GET/HEAD). */
async function serveWebApp(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
  if (req.method !== "GET" && req.method !== "HEAD") return false;
  const send = (status: number, type: string, body: string | Buffer, headers: Record<string, string>) => {
    res.writeHead(status, { "content-type": type, "content-length": String(Buffer.byteLength(body)), "x-content-type-options": "nosniff", ...headers });
    res.end(req.method === "HEAD" ? undefined : body);
    return true;
  };
  if (APP_ROUTE.test(path)) {
    const index = await readFile(new URL("index.html", WEB_DIST)).catch(() => null);
    if (index) return send(200, "text/html; charset=utf-8", index, { "cache-control": "no-cache", "content-security-policy": APP_CSP, "referrer-policy": "same-origin" });
    return path === "/" ? send(200, "text/html; charset=utf-8", FALLBACK_PAGE, { "cache-control": "no-cache" }) : false;
  }
  if (!APP_FILE.test(path) || path === "/index.html" || path === GRAPHQL_PATH) return false;
  const ext = /\.[a-z0-9]+$/i.exec(path)?.[0]?.toLowerCase() ?? "";
  const type = APP_TYPES[ext];
  if (!type) return false;
  const file = new URL(`.${path}`, WEB_DIST);
  if (!(await stat(file).catch(() => null))?.isFile()) return false;
  // Vite names what it builds under assets/ by content hash: those never change.
  const cache = path.startsWith("/assets/") ? "public, max-age=31536000, immutable" : "public, max-age=3600";
  return send(200, type, await readFile(file), { "cache-control": cache });
}

/** A host name or address with an optional port: nothing that could turn a URL into something else. */
const HOST = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:\d{1,5})?$/i;

/**
 * The origin image URLs are built on. `X-Forwarded-Host`/`-Proto` count only behind a proxy the
 * operator vouches for (MOSAIC_TRUST_PROXY), since any client can send them; every value is checked
 * (a host name and port, http or https), and anything else leaves URLs relative.
 */
function originOf(headers: Record<string, string | string[] | undefined>, trustProxy: boolean): string {
  const first = (v: string | string[] | undefined) => (typeof v === "string" ? v.split(",")[0]!.trim() : undefined);
  const host = (trustProxy ? first(headers["x-forwarded-host"]) : undefined) ?? first(headers.host);
  const proto = (trustProxy ? first(headers["x-forwarded-proto"]) : undefined) ?? "http";
  if (!host || !HOST.test(host) || (proto !== "http" && proto !== "https")) return "";
  return `${proto}://${host}`;
}

/**
 * Answers a request refused before GraphQL runs: a JSON body with one coded error. The connection is
 * closed after it, and a body still coming is drained, not read. Returns true (it answered).
 */
function refuse(req: IncomingMessage, res: ServerResponse, status: number, code: string, message: string): true {
  res.writeHead(status, { "content-type": "application/json", connection: "close" });
  res.end(JSON.stringify({ errors: [{ message, extensions: { code } }] }));
  req.resume();
  return true;
}

/**
 * A Host header must be one a URL can be built from: the fetch adapter under yoga answered
 * `Host: a b` (or `localhost:99999`) with a 500 carrying a stack trace. Returns true when it answered.
 */
function refuseHost(req: IncomingMessage, res: ServerResponse): boolean {
  const host = req.headers.host;
  if (host === undefined) return false;
  try {
    if (HOST.test(host) && new URL(`http://${host}/`).host) return false;
  } catch {
    // refused below
  }
  return refuse(req, res, 400, "BAD_REQUEST", "the Host header is not a valid host name and port");
}

/**
 * POST bodies are at most MAX_BODY_BYTES (yoga's own default is 25 MB): larger is 413 before a byte is
 * read, and a body without a Content-Length (chunked) is 411, since its size cannot be known up front.
 * Returns true when it answered.
 */
function refuseBody(req: IncomingMessage, res: ServerResponse): boolean {
  const length = req.headers["content-length"];
  if (length === undefined) return refuse(req, res, 411, "LENGTH_REQUIRED", "send the request body with a Content-Length header");
  const n = Number(length);
  if (!Number.isInteger(n) || n < 0) return refuse(req, res, 411, "LENGTH_REQUIRED", "Content-Length must be a whole number of bytes");
  if (n > MAX_BODY_BYTES) return refuse(req, res, 413, "PAYLOAD_TOO_LARGE", `the request body is ${n} bytes; at most ${MAX_BODY_BYTES} are accepted`);
  return false;
}

/**
 * Cross-site form posts cannot run operations: a browser sends `application/x-www-form-urlencoded`,
 * `multipart/form-data` or `text/plain` from any page without asking, so POST takes only the GraphQL
 * content types (JSON ones need a CORS preflight from another origin). Returns true when it answered.
 */
function refuseContentType(req: IncomingMessage, res: ServerResponse): boolean {
  const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  if (["application/json", "application/graphql-response+json", "application/graphql"].includes(type)) return false;
  return refuse(req, res, 415, "UNSUPPORTED_MEDIA_TYPE", "POST a GraphQL request as application/json");
}

/**
 * The client's address: the socket's peer, or the first X-Forwarded-For hop behind a proxy the
 * operator vouches for (MOSAIC_TRUST_PROXY). Per-address quotas count by it when no key is used.
 */
export function clientAddress(req: IncomingMessage | undefined, trustProxy: boolean): string {
  const forwarded = req?.headers["x-forwarded-for"];
  const first = typeof forwarded === "string" ? forwarded.split(",")[0]!.trim() : undefined;
  if (trustProxy && first && first.length <= 64) return first;
  return req?.socket.remoteAddress ?? "unknown";
}

/** An Origin is allowed when absent (not a browser), the server's own, or listed. */
export function originAllowed(origin: string | undefined, req: IncomingMessage, allowed: string[]): boolean {
  if (!origin) return true;
  const o = origin.replace(/\/+$/, "");
  if (allowed.includes(o)) return true;
  const host = req.headers.host;
  return !!host && (o === `http://${host}` || o === `https://${host}`);
}

/** GET parameters that must be JSON (`variables`, `extensions`) and are not: 400 with a code (yoga answered 200). */
function refuseParams(req: IncomingMessage, res: ServerResponse): boolean {
  const params = new URL(req.url ?? "/", "http://localhost").searchParams;
  for (const name of ["variables", "extensions"]) {
    const v = params.get(name);
    if (v === null || v === "") continue;
    try {
      const parsed: unknown = JSON.parse(v);
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("not an object");
    } catch {
      res.writeHead(400, { "content-type": "application/json" });
      res.end(JSON.stringify({ errors: [{ message: `the ${name} parameter must be a JSON object`, extensions: { code: "BAD_REQUEST" } }] }));
      return true;
    }
  }
  return false;
}

export interface HttpServer {
  server: Server;
  close(): Promise<void>;
}

export interface HttpOptions {
  /** Origins besides the server's own whose pages may call it (MOSAIC_CORS_ORIGINS). */
  corsOrigins?: string[];
  /** Believe X-Forwarded-Host/-Proto (MOSAIC_TRUST_PROXY). */
  trustProxy?: boolean;
  /** Build image URLs on this address, not on what the request says (MOSAIC_PUBLIC_URL). */
  publicUrl?: string;
  /** Serve GraphiQL and answer introspection (MOSAIC_GRAPHIQL; default on). */
  graphiql?: boolean;
}

export function createHttpServer(app: AppContext, ops: OpsTarget, http: HttpOptions = {}): HttpServer {
  const corsOrigins = http.corsOrigins ?? [];
  const trustProxy = http.trustProxy ?? false;
  // With MOSAIC_PUBLIC_URL set, no header a client sends picks its links' host.
  // Image paths are appended to it: a trailing slash (as code may pass it; config.ts strips the env's) would give "//images".
  const publicUrl = http.publicUrl?.replace(/\/+$/, "");
  const origin = (headers: Record<string, string | string[] | undefined>) => publicUrl ?? originOf(headers, trustProxy);
  const graphiql = http.graphiql ?? true;
  const yoga = createYoga<Record<string, unknown>, Context>({
    schema,
    graphqlEndpoint: GRAPHQL_PATH,
    landingPage: false,
    renderGraphiQL,
    graphiql: graphiql ? { title: "Mosaic", defaultTabs: EXAMPLE_TABS, subscriptionsProtocol: "SSE" } : false,
    // graphql-ws requests have no fetch Request here; their context is completed in onSubscribe below.
    // A key that is sent must be valid, and MOSAIC_AUTH=required needs one: UNAUTHENTICATED (401) otherwise.
    context: async ({ request, req }: { request?: Request; req?: IncomingMessage }) => ({
      ...app, origin: request ? origin(Object.fromEntries(request.headers)) : "", signal: request?.signal,
      log: request ? withFields(app.log, { requestId: request.headers.get("x-request-id") }) : app.log,
      loaders: createLoaders(app.prisma),
      viewer: request ? await viewerOf(app.access.keys, app.access.auth, request.headers.get("authorization") ?? undefined, clientAddress(req, trustProxy)) : ANONYMOUS,
    }),
    // yoga's own warnings and errors go to the same log. yoga logs each error that maskError changed,
    // as an error: maskError has logged what matters already (an internal error with its stack, a
    // database outage), and the rest are the client's own mistakes (a variable of the wrong type, an
    // invalid id), which at level error made alerts fire on bad input. Those lines are debug.
    logging: {
      debug: () => {}, info: () => {},
      warn: (...args: unknown[]) => app.log(`graphql-yoga: ${args.map(String).join(" ")}`, { level: "warn" }),
      error: (...args: unknown[]) => app.log(`graphql-yoga: ${args.map(String).join(" ")}`, { level: args.length === 1 && args[0] instanceof Error ? "debug" : "error" }),
    },
    maskedErrors: { maskError: maskError(app.log) },
    // Same origin (the page, GraphiQL) needs no CORS; other origins only when listed, never reflected.
    cors: corsOrigins.length ? { origin: corsOrigins, credentials: true, methods: ["GET", "POST"] } : false,
    plugins: [
      withoutOriginalErrors,
      // Depth, aliases, tokens, directives and cost: refused before anything runs (docs/security.md).
      ...limitPlugins(),
      // With GraphiQL off, the schema is not served either (graphql-js's own rule).
      ...(graphiql ? [] : [{ onValidate: ({ addValidationRule }: { addValidationRule: (r: typeof NoSchemaIntrospectionCustomRule) => void }) => addValidationRule(NoSchemaIntrospectionCustomRule) }]),
      // GraphQL operations in this process's registry, served by /metrics below (not by the plugin).
      usePrometheus({
        registry: ops.metrics.registry,
        endpoint: false,
        // Labels take only values the server chooses: the URL label would carry each client's Host
        // header, the operation name and an error's path (aliases) are whatever a client writes, and
        // each new value is a series kept for good (1,300 requests with random operation names made
        // /metrics 68 MB and a scrape 1.9 s).
        labels: { url: false, operationName: false, path: false },
        metrics: {
          graphql_envelop_request: "mosaic_graphql_operations_total",
          graphql_envelop_request_duration: "mosaic_graphql_operation_duration_seconds",
          graphql_envelop_error_result: "mosaic_graphql_errors_total",
          graphql_envelop_phase_parse: "mosaic_graphql_parse_duration_seconds",
          graphql_envelop_phase_validate: "mosaic_graphql_validate_duration_seconds",
          graphql_envelop_phase_execute: "mosaic_graphql_execute_duration_seconds",
          graphql_envelop_phase_subscribe: "mosaic_graphql_subscribe_duration_seconds",
          graphql_yoga_http_duration: "mosaic_graphql_http_duration_seconds",
        },
      }),
    ],
  });

  const server = createServer(async (req, res) => {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    const requestId = trackRequest(req, res, path, app.log, ops.metrics);
    try {
      if (refuseHost(req, res)) return;
      if (await servePicture(app.prisma, app.access, req, res)) return;
      if (await serveOps(req, res, path, ops)) return;
      if (await serveWebApp(req, res, path)) return;
      // Only the exact path reaches yoga: it also answers "/graphql/", which the checks below would
      // not see (a cross-site form post, or an unlimited body, through a trailing slash).
      if (path !== GRAPHQL_PATH) return void refuse(req, res, 404, "NOT_FOUND", `no such path (GraphQL is at ${GRAPHQL_PATH})`);
      if (req.method === "POST" && (refuseContentType(req, res) || refuseBody(req, res))) return;
      if (req.method === "GET" && refuseParams(req, res)) return;
      // The instance itself as the listener: handleNodeRequestAndResponse never answered on Node 20 here.
      await yoga(req, res);
    } catch (e) {
      if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { code: "INTERNAL", message: "internal error" } }));
      app.log(`mosaic: request failed: ${(e as Error).message}`, { event: "request_failed", requestId, err: e });
    }
  });

  type Enveloped = ReturnType<typeof yoga.getEnveloped>;
  // A graphql-ws message over the body limit closes the socket (1009, message too big).
  // A browser page from another origin cannot open a socket either (browsers send Origin; other clients need not).
  const wss = new WebSocketServer({
    server, path: GRAPHQL_PATH, maxPayload: MAX_BODY_BYTES,
    verifyClient: ({ origin, req }: { origin?: string; req: IncomingMessage }) => originAllowed(origin, req, corsOrigins),
  });
  // Per connection: who it is (from connectionParams.authorization at connect).
  type Extra = { request: IncomingMessage; viewer?: Viewer };
  // Message types only a server sends (next, error, connection_ack) are a client's protocol error:
  // 4400, as for any other bad message (graphql-ws itself closed with 4500, an internal error).
  wss.on("connection", (socket) => {
    // A client's protocol violation (a message over maxPayload, a bad frame) or a connection it reset:
    // ws has already closed the socket with the right code (1009, 1002, ...) when it emits "error", and
    // graphql-ws answers every socket error with console.error and a plain-text stack on stderr, outside
    // the JSON log, so any client could write stacks into it at will. Such errors stop here, at debug.
    const emit = socket.emit.bind(socket);
    socket.emit = ((event: string | symbol, ...args: unknown[]) => {
      const code = (args[0] as { code?: unknown } | undefined)?.code;
      if (event === "error" && typeof code === "string" && (code.startsWith("WS_ERR_") || code === "ECONNRESET" || code === "EPIPE")) {
        app.log(`mosaic: graphql-ws socket closed on a client error: ${(args[0] as Error).message}`, { level: "debug" });
        return true;
      }
      return emit(event, ...args);
    }) as typeof socket.emit;
    socket.prependListener("message", (data: Buffer, isBinary: boolean) => {
      if (isBinary) return;
      let type: unknown;
      try {
        type = (JSON.parse(String(data)) as { type?: unknown } | null)?.type;
      } catch {
        return; // graphql-ws answers invalid JSON itself (4400)
      }
      if (type === "next" || type === "error" || type === "connection_ack") socket.close(4400, `a client may not send "${type}"`);
    });
  });
  const wsServer = useServer<Record<string, unknown> | undefined, Extra>(
    {
      onConnect: async (ctx) => {
        try {
          ctx.extra.viewer = await viewerOf(app.access.keys, app.access.auth, ctx.connectionParams?.authorization, clientAddress(ctx.extra.request, trustProxy));
          return true;
        } catch (e) {
          if (!(e instanceof GraphQLError)) app.log(`mosaic: websocket authentication failed: ${(e as Error).message}`, { level: "error", err: e });
          return false; // closes with 4403 Forbidden
        }
      },
      // onSubscribe below puts yoga's enveloped execute/subscribe in rootValue (yoga's documented recipe).
      execute: (args) => (args.rootValue as Enveloped).execute(args) as ReturnType<typeof execute>,
      subscribe: (args) => (args.rootValue as Enveloped).subscribe(args) as ReturnType<typeof subscribe>,
      onSubscribe: async (ctx, _id, payload) => {
        // graphql-ws lists the connection's operations in ctx.subscriptions, this one included.
        if (Object.keys(ctx.subscriptions).length > app.access.maxSubscriptionsPerSocket) {
          return [new GraphQLError(`at most ${app.access.maxSubscriptionsPerSocket} operations at once on one connection`, { extensions: { code: "TOO_MANY_SUBSCRIPTIONS" } })];
        }
        const { schema: s, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
          ...ctx, req: ctx.extra.request, socket: ctx.extra.socket, params: payload,
        });
        // A document that does not parse, or names no single operation, is an error message on this
        // operation (coded as over HTTP); thrown here, graphql-ws would close the socket with 4500.
        let document: DocumentNode;
        try {
          document = parse(payload.query);
        } catch (e) {
          return [new GraphQLError(e instanceof Error ? e.message : String(e), { extensions: { code: "GRAPHQL_PARSE_FAILED" } })];
        }
        if (!getOperationAST(document, payload.operationName)) {
          return [new GraphQLError(payload.operationName ? `no operation named "${payload.operationName}"` : "the document has several operations: send operationName", { extensions: { code: "OPERATION_RESOLUTION_FAILURE" } })];
        }
        const args = {
          schema: s,
          operationName: payload.operationName,
          document,
          variableValues: payload.variables,
          contextValue: {
            ...(await contextFactory()), ...app, origin: origin(ctx.extra.request.headers),
            log: withFields(app.log, { requestId: requestIdOf(ctx.extra.request) }), viewer: ctx.extra.viewer!, loaders: createLoaders(app.prisma),
          },
          rootValue: { execute, subscribe },
        };
        const errors = validate(args.schema, args.document);
        if (errors.length) return errors;
        return args;
      },
    },
    wss,
  );

  return {
    server,
    async close() {
      await wsServer.dispose();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
