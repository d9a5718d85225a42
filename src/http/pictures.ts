/**
 * GET /images/<id>.<format>[?size=&upscale=] and GET /previews/<id>.<format>: stored PNGs served in
 * the asked format and size. Images never change once written, so responses carry a strong ETag.
 *
 * A picture of a private generation, or any picture when MOSAIC_AUTH=required, needs the signed
 * link the API hands out (`expires` and `sig`, src/auth/signing.ts): an `<img>` tag works without
 * headers, and a leaked link stops working when it expires. Public pictures with auth off are
 * cached for a year; signed ones privately, until their link expires.
 */
import { createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Access } from "../auth/access.ts";
import type { Prisma } from "../db/client.ts";
import { MosaicError } from "../engine/errors.ts";
import { encodedPicture, type PictureKind } from "../images/cache.ts";
import { CONTENT_TYPES, parseFormat, validateSize, type Upscale } from "../images/encode.ts";

const ROUTE = /^\/(images|previews)\/([0-9a-f-]{36})\.([a-z]+)$/i;

const CODES: Record<number, string> = { 400: "BAD_INPUT", 403: "FORBIDDEN", 404: "NOT_FOUND" };

function send(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify({ error: { code: CODES[status], message: body } }));
}

/** The path a signature covers: one picture in every format and size. */
export const signedPath = (kind: PictureKind, id: string) => `/${kind}/${id}`;

/** Returns false when the request is not for a picture route. */
export async function servePicture(prisma: Prisma, access: Pick<Access, "auth" | "signer">, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  const url = new URL(req.url ?? "/", "http://localhost");
  const m = ROUTE.exec(url.pathname);
  if (!m || (req.method !== "GET" && req.method !== "HEAD")) return false;
  const [, kind, id, ext] = m as unknown as [string, PictureKind, string, string];
  let format;
  let width: number | undefined;
  let upscale: Upscale = "nearest";
  try {
    format = parseFormat(ext);
    const size = url.searchParams.get("size");
    // Digits only: Number() also reads "0x10", "1e3" and " 16 ".
    if (size !== null) width = validateSize(/^\d{1,5}$/.test(size) ? Number(size) : Number.NaN);
    const up = url.searchParams.get("upscale");
    if (up !== null) {
      if (up !== "nearest" && up !== "smooth") throw new MosaicError("BAD_INPUT", "upscale must be nearest or smooth");
      upscale = up;
    }
  } catch (e) {
    send(res, 400, (e as Error).message);
    return true;
  }
  // Bytes only when the encoding is not cached (src/images/cache.ts).
  const select = { width: true, generation: { select: { visibility: true } } } as const;
  const row = kind === "images"
    ? await prisma.image.findUnique({ where: { id }, select }).catch(() => null)
    : await prisma.preview.findUnique({ where: { id }, select }).catch(() => null);
  if (!row) {
    send(res, 404, `no ${kind === "images" ? "image" : "preview"} with id ${id}`);
    return true;
  }
  let cache = "public, max-age=31536000, immutable";
  if (access.auth === "required" || row.generation.visibility === "PRIVATE") {
    const left = access.signer.check(signedPath(kind, id), url.searchParams.get("expires"), url.searchParams.get("sig"));
    if (left === null) {
      send(res, 403, "this picture needs a valid signed link (its url from the API); this one is missing, wrong or expired");
      return true;
    }
    cache = `private, max-age=${left}`;
  }
  const etag = `"${createHash("sha1").update(`${id}:${format}:${width ?? ""}:${upscale}`).digest("hex")}"`;
  const headers = { etag, "cache-control": cache, "content-type": CONTENT_TYPES[format] };
  if (req.headers["if-none-match"] === etag) {
    res.writeHead(304, headers);
    res.end();
    return true;
  }
  const bytes = await encodedPicture(kind, id, row.width, { format, width, upscale }, async () => {
    const where = { where: { id }, select: { bytes: true } };
    return (kind === "images" ? await prisma.image.findUnique(where) : await prisma.preview.findUnique(where))?.bytes ?? null;
  }).catch(() => null);
  if (!bytes) {
    send(res, 404, `no ${kind === "images" ? "image" : "preview"} with id ${id}`);
    return true;
  }
  res.writeHead(200, { ...headers, "content-length": bytes.length });
  res.end(req.method === "HEAD" ? undefined : bytes);
  return true;
}
