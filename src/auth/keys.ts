/**
 * API keys: `mosaic keys create|list|revoke`, and the lookup every request makes.
 *
 * A key is "mosaic_" + 32 random bytes (base64url). Only its SHA-256 is stored: with 256 bits of
 * randomness there is nothing to brute-force, so a slow password hash would only slow every request.
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import type { Prisma } from "../db/client.ts";
import { badInput } from "../engine/errors.ts";

export const KEY_PREFIX = "mosaic_";
const NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

export interface KeyInfo {
  id: string;
  name: string;
  admin: boolean;
  createdAt: Date;
  revokedAt: Date | null;
}

/** What is read of a key row: everything but its hash. */
const INFO = { id: true, name: true, admin: true, createdAt: true, revokedAt: true } as const;

export const hashKey = (key: string) => createHash("sha256").update(key).digest("hex");

export async function createKey(prisma: Prisma, name: string, admin = false): Promise<{ key: string; info: KeyInfo }> {
  if (!NAME.test(name)) throw badInput("a key name is 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit");
  const key = KEY_PREFIX + randomBytes(32).toString("base64url");
  const existing = await prisma.apiKey.findUnique({ where: { name } });
  if (existing) throw badInput(`a key named "${name}" exists already${existing.revokedAt ? " (revoked; names are not reused)" : ""}`);
  const info = await prisma.apiKey.create({
    data: { id: randomUUID(), name, hash: hashKey(key), admin },
    select: INFO,
  });
  return { key, info };
}

export function listKeys(prisma: Prisma): Promise<KeyInfo[]> {
  return prisma.apiKey.findMany({ orderBy: { createdAt: "asc" }, select: INFO });
}

/** Revokes a key by name; its generations stay (owned by nobody who can still sign in as it). */
export async function revokeKey(prisma: Prisma, name: string): Promise<KeyInfo> {
  const row = await prisma.apiKey.findUnique({ where: { name }, select: INFO });
  if (!row) throw badInput(`no key named "${name}"`);
  if (row.revokedAt) return row;
  return prisma.apiKey.update({ where: { name }, data: { revokedAt: new Date() }, select: INFO });
}

/**
 * The key a request's text names, or null when unknown or revoked. Lookups are cached for a few
 * seconds per process (a busy client must not cost a query per request), so a revocation takes
 * effect everywhere within KEY_CACHE_MS.
 */
export const KEY_CACHE_MS = 5_000;

export class KeyLookup {
  private cache = new Map<string, { at: number; key: KeyInfo | null }>();

  constructor(private prisma: Prisma, private now = () => Date.now()) {}

  async find(key: string): Promise<KeyInfo | null> {
    if (!key.startsWith(KEY_PREFIX) || key.length > 100) return null;
    const hash = hashKey(key);
    const hit = this.cache.get(hash);
    if (hit && this.now() - hit.at < KEY_CACHE_MS) return hit.key;
    const row = await this.prisma.apiKey.findUnique({ where: { hash }, select: INFO });
    const found = row && !row.revokedAt ? row : null;
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(hash, { at: this.now(), key: found });
    return found;
  }
}
