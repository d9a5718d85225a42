/**
 * GET /images/<id>.<format>[?size=&upscale=] and GET /previews/<id>.<format>: stored PNGs served in
 * the asked format and size. Images never change once written, so responses carry a strong ETag
 * and a year-long immutable cache lifetime.
 */
import { createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Prisma } from "../db/client.ts";
import { MosaicError } from "../engine/errors.ts";
import { CONTENT_TYPES, parseFormat, transcode, validateSize, type Upscale } from "../images/encode.ts";

const ROUTE = /^\/(images|previews)\/([0-9a-f-]{36})\.([a-z]+)$/i;

function send(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify({ error: { code: status === 404 ? "NOT_FOUND" : "BAD_INPUT", message: body } }));
}

/** Returns false when the request is not for a picture route. */
export async function servePicture(prisma: Prisma, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  const url = new URL(req.url ?? "/", "http://localhost");
  const m = ROUTE.exec(url.pathname);
  if (!m || (req.method !== "GET" && req.method !== "HEAD")) return false;
  const [, kind, id, ext] = m as unknown as [string, "images" | "previews", string, string];
  let format;
  let width: number | undefined;
  let upscale: Upscale = "nearest";
  try {
    format = parseFormat(ext);
    const size = url.searchParams.get("size");
    if (size !== null) width = validateSize(Number(size));
    const up = url.searchParams.get("upscale");
    if (up !== null) {
      if (up !== "nearest" && up !== "smooth") throw new MosaicError("BAD_INPUT", "upscale must be nearest or smooth");
      upscale = up;
    }
  } catch (e) {
    send(res, 400, (e as Error).message);
    return true;
  }
  const row = kind === "images"
    ? await prisma.image.findUnique({ where: { id }, select: { bytes: true, width: true } }).catch(() => null)
    : await prisma.preview.findUnique({ where: { id }, select: { bytes: true, width: true } }).catch(() => null);
  if (!row) {
    send(res, 404, `no ${kind === "images" ? "image" : "preview"} with id ${id}`);
    return true;
  }
  const etag = `"${createHash("sha1").update(`${id}:${format}:${width ?? ""}:${upscale}`).digest("hex")}"`;
  const headers = { etag, "cache-control": "public, max-age=31536000, immutable", "content-type": CONTENT_TYPES[format] };
  if (req.headers["if-none-match"] === etag) {
    res.writeHead(304, headers);
    res.end();
    return true;
  }
  const bytes = await transcode(row.bytes, row.width, { format, width, upscale });
  res.writeHead(200, { ...headers, "content-length": bytes.length });
  res.end(req.method === "HEAD" ? undefined : bytes);
  return true;
}
