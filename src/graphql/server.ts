/**
 * One HTTP server for everything: GraphQL over HTTP and SSE (yoga), graphql-ws on the same path,
 * GraphiQL served offline, picture routes and /health.
 */
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { renderGraphiQL } from "@graphql-yoga/render-graphiql";
import { execute, subscribe } from "graphql";
import { createYoga } from "graphql-yoga";
import { useServer } from "graphql-ws/use/ws";
import { WebSocketServer } from "ws";
import { servePicture } from "../http/pictures.ts";
import type { AppContext, Context } from "./context.ts";
import { EXAMPLE_TABS } from "./examples.ts";
import { schema } from "./schema.ts";
import { maskError } from "./errors.ts";
import { checkHealth } from "./types/health.ts";

export const GRAPHQL_PATH = "/graphql";
/** A page that shows the grid filling in: a prompt box and the live images (no libraries). */
const PAGE = readFileSync(new URL("../http/page.html", import.meta.url), "utf8");

function originOf(headers: Record<string, string | string[] | undefined>, secure = false): string {
  const host = headers["x-forwarded-host"] ?? headers.host;
  if (typeof host !== "string") return "";
  const proto = typeof headers["x-forwarded-proto"] === "string" ? headers["x-forwarded-proto"] : secure ? "https" : "http";
  return `${proto}://${host}`;
}

export interface HttpServer {
  server: Server;
  close(): Promise<void>;
}

export function createHttpServer(app: AppContext): HttpServer {
  const yoga = createYoga<Record<string, unknown>, Context>({
    schema,
    graphqlEndpoint: GRAPHQL_PATH,
    landingPage: false,
    renderGraphiQL,
    graphiql: { title: "Mosaic", defaultTabs: EXAMPLE_TABS, subscriptionsProtocol: "SSE" },
    // graphql-ws requests have no fetch Request here; their origin is set in onSubscribe below.
    context: ({ request }: { request?: Request }) => ({ ...app, origin: request ? originOf(Object.fromEntries(request.headers)) : "", signal: request?.signal }),
    logging: "warn",
    maskedErrors: { maskError: maskError(app.log) },
  });

  const server = createServer(async (req, res) => {
    try {
      if (await servePicture(app.prisma, req, res)) return;
      const path = new URL(req.url ?? "/", "http://localhost").pathname;
      if (path === "/health") {
        const h = await checkHealth(app);
        res.writeHead(h.database ? 200 : 503, { "content-type": "application/json" });
        res.end(JSON.stringify({ ok: h.database, role: app.role, queued: h.queued, running: h.running }));
        return;
      }
      if (path === "/" && (req.method === "GET" || req.method === "HEAD")) {
        res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
        res.end(req.method === "HEAD" ? undefined : PAGE);
        return;
      }
      // The instance itself as the listener: handleNodeRequestAndResponse never answered on Node 20 here.
      await yoga(req, res);
    } catch (e) {
      if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { code: "INTERNAL", message: "internal error" } }));
      console.error(`mosaic: request failed: ${(e as Error).stack}`);
    }
  });

  type Enveloped = ReturnType<typeof yoga.getEnveloped>;
  const wss = new WebSocketServer({ server, path: GRAPHQL_PATH });
  const wsServer = useServer(
    {
      // onSubscribe below puts yoga's enveloped execute/subscribe in rootValue (yoga's documented recipe).
      execute: (args) => (args.rootValue as Enveloped).execute(args) as ReturnType<typeof execute>,
      subscribe: (args) => (args.rootValue as Enveloped).subscribe(args) as ReturnType<typeof subscribe>,
      onSubscribe: async (ctx, _id, payload) => {
        const { schema: s, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
          ...ctx, req: ctx.extra.request, socket: ctx.extra.socket, params: payload,
        });
        const args = {
          schema: s,
          operationName: payload.operationName,
          document: parse(payload.query),
          variableValues: payload.variables,
          contextValue: { ...(await contextFactory()), ...app, origin: originOf(ctx.extra.request.headers) },
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
