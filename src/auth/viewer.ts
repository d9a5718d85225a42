/**
 * Who is asking: the key a request carries (if any) and the address it came from, and what that
 * lets them see and change. MOSAIC_AUTH=required makes a key necessary for every operation; with
 * the default "off" a key is optional (and still makes its generations its own).
 */
import { GraphQLError } from "graphql";
import type { Generation } from "../db/generated/client.ts";
import type { KeyInfo, KeyLookup } from "./keys.ts";

export type AuthMode = "off" | "required";

export interface Viewer {
  key: KeyInfo | null;
  /** The client's address (the socket's, or X-Forwarded-For's first hop behind a trusted proxy). */
  address: string;
}

export function parseAuthMode(value: string | undefined): AuthMode {
  if (value === undefined || value === "" || value === "off") return "off";
  if (value === "required") return "required";
  throw new Error(`MOSAIC_AUTH must be off or required (got "${value}")`);
}

/** UNAUTHENTICATED, answered with HTTP 401 where the transport has a status. */
export function unauthenticated(message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: "UNAUTHENTICATED", http: { status: 401, headers: { "www-authenticate": "Bearer" } } } });
}

/** The key text of an `Authorization: Bearer <key>` value; undefined when there is none. */
export function bearerToken(header: unknown): string | undefined {
  if (header === undefined || header === null || header === "") return undefined;
  if (typeof header !== "string") throw unauthenticated("authorization must be a string: \"Bearer <key>\"");
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) throw unauthenticated("authorization must be \"Bearer <key>\"");
  return m[1]!;
}

/** The viewer of a request, or UNAUTHENTICATED: a key that is sent must be valid, and in "required" mode one must be sent. */
export async function viewerOf(keys: KeyLookup, mode: AuthMode, authorization: unknown, address: string): Promise<Viewer> {
  const token = bearerToken(authorization);
  if (token === undefined) {
    if (mode === "required") throw unauthenticated("this server needs an API key: send Authorization: Bearer <key>");
    return { key: null, address };
  }
  const key = await keys.find(token);
  if (!key) throw unauthenticated("unknown or revoked API key");
  return { key, address };
}

/** Prisma filter for the generations a viewer may see: admins all; a key its own and the public ones; no key the public ones. */
export function visibleTo(v: Viewer): { OR?: object[] } {
  if (v.key?.admin) return {};
  if (v.key) return { OR: [{ visibility: "PUBLIC" }, { ownerKeyId: v.key.id }] };
  return { OR: [{ visibility: "PUBLIC" }] };
}

/**
 * Cancel and delete: the owner or an admin. A generation made without a key belongs to nobody: with
 * auth off anyone may change it (the single-user default), with auth required only an admin.
 */
export function canChange(v: Viewer, g: Pick<Generation, "ownerKeyId">, mode: AuthMode): boolean {
  if (v.key?.admin) return true;
  if (g.ownerKeyId) return v.key?.id === g.ownerKeyId;
  return mode === "off";
}
