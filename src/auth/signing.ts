/**
 * Signed image URLs: `/images/<id>.png?expires=<unix seconds>&sig=<HMAC-SHA256>` work in an `<img>`
 * tag without headers, and a leaked link stops working when it expires. The signing secret lives
 * in the database (table "Secret"), so every API process of a deployment signs and checks alike.
 *
 * Expiry is rounded to windows of `ttl` seconds (a link lives between ttl and 2·ttl): within a
 * window the same image gets the same URL, so browsers and proxies can still cache it.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { Prisma } from "../db/client.ts";

export const DEFAULT_URL_TTL_SECONDS = 3600;

export class UrlSigner {
  constructor(private secret: Buffer, readonly ttlSeconds = DEFAULT_URL_TTL_SECONDS, private now = () => Date.now()) {}

  private mac(path: string, expires: number): string {
    return createHmac("sha256", this.secret).update(`${path}\n${expires}`).digest("base64url");
  }

  /** Query parameters that make `path` (e.g. /images/<id>.png) valid until the end of the next window. */
  sign(path: string): { expires: string; sig: string } {
    const nowS = Math.floor(this.now() / 1000);
    const expires = (Math.floor(nowS / this.ttlSeconds) + 2) * this.ttlSeconds;
    return { expires: String(expires), sig: this.mac(path, expires) };
  }

  /** Seconds the signature has left, or null when it is missing, wrong or expired. */
  check(path: string, expires: string | null, sig: string | null): number | null {
    if (!expires || !sig || !/^\d{1,12}$/.test(expires)) return null;
    const left = Number(expires) - Math.floor(this.now() / 1000);
    if (left <= 0) return null;
    const want = Buffer.from(this.mac(path, Number(expires)));
    const got = Buffer.from(sig);
    return want.length === got.length && timingSafeEqual(want, got) ? left : null;
  }
}

/** The deployment's signing secret: created by the first process that asks, read by the rest. */
export async function urlSecret(prisma: Prisma): Promise<Buffer> {
  await prisma.$executeRaw`INSERT INTO "Secret" (name, value) VALUES ('image-urls', ${randomBytes(32).toString("base64url")}) ON CONFLICT (name) DO NOTHING`;
  const row = await prisma.secret.findUniqueOrThrow({ where: { name: "image-urls" } });
  return Buffer.from(row.value, "base64url");
}
