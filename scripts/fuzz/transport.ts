/** Sending one fuzz request over HTTP and reading (at most 1 MiB of) its answer. */
import http from "node:http";
import type { FuzzRequest } from "./requests.ts";

export interface FuzzResponse {
  /** The HTTP status, or "timeout" / "no-response" / "client-error". */
  status: number | "timeout" | "no-response" | "client-error";
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  ms: number;
  /** The network error, for no-response. */
  error?: string;
}

/** Read at most this much of a body (GraphiQL's page is 9 MB; the rest is not checked). */
const MAX_READ = 1 << 20;

/**
 * Sends one request. A reset on a kept-alive socket is retried once on a new connection: the server may
 * close an idle socket just as the client reuses it (Node's documented race), which says nothing about
 * the request.
 */
export async function send(base: URL, req: FuzzRequest, o: { timeoutMs: number; streamMs: number; agent: http.Agent }): Promise<FuzzResponse> {
  const first = await sendOnce(base, req, o.agent, o);
  if (first.status === "no-response" && first.reusedSocket) return sendOnce(base, req, false, o);
  return first;
}

function sendOnce(base: URL, req: FuzzRequest, agent: http.Agent | false, o: { timeoutMs: number; streamMs: number }): Promise<FuzzResponse & { reusedSocket?: boolean }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const done = (s: Omit<FuzzResponse, "ms">) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ...s, ms: Math.round(performance.now() - t0) });
    };
    const body = req.body === undefined ? undefined : Buffer.isBuffer(req.body) ? req.body : Buffer.from(req.body, "utf8");
    const headers: Record<string, string> = { ...req.headers };
    if (body && req.chunked) headers["transfer-encoding"] = "chunked";
    else if (body) headers["content-length"] = String(body.length);
    let out: http.ClientRequest;
    try {
      out = http.request({ host: base.hostname, port: base.port, method: req.method, path: req.path, headers, agent });
    } catch (e) {
      done({ status: "client-error", headers: {}, body: Buffer.alloc(0), error: (e as Error).message });
      return;
    }
    timer = setTimeout(() => {
      out.destroy();
      done({ status: "timeout", headers: {}, body: Buffer.alloc(0) });
    }, o.timeoutMs);
    out.on("response", (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const type = String(res.headers["content-type"] ?? "");
      const finish = () => done({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
      // A stream (a subscription) is read for a moment, then dropped.
      const streamTimer = type.startsWith("text/event-stream") || type.startsWith("multipart/mixed")
        ? setTimeout(() => {
          finish();
          res.destroy();
        }, o.streamMs)
        : undefined;
      res.on("data", (c: Buffer) => {
        chunks.push(c);
        size += c.length;
        if (size >= MAX_READ) {
          finish();
          res.destroy();
        }
      });
      const end = () => {
        clearTimeout(streamTimer);
        finish();
      };
      res.on("end", end);
      res.on("error", end);
      res.on("close", end);
    });
    out.on("error", (e: NodeJS.ErrnoException) => {
      const reused = out.reusedSocket && (e.code === "ECONNRESET" || e.code === "EPIPE");
      if (settled || !reused) {
        done({ status: "no-response", headers: {}, body: Buffer.alloc(0), error: e.code ?? e.message });
        return;
      }
      settled = true;
      clearTimeout(timer);
      resolve({ status: "no-response", headers: {}, body: Buffer.alloc(0), error: e.code, ms: 0, reusedSocket: true });
    });
    if (body && req.chunked) {
      const half = body.length >> 1;
      out.write(body.subarray(0, half));
      out.end(body.subarray(half));
    } else out.end(body);
  });
}
