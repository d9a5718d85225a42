/** Who may do what, and how much: the settings (from the environment) and what they need at run time. */
import type { Prisma } from "../db/client.ts";
import { DEFAULT_QUOTAS, type Quotas } from "../jobs/admission.ts";
import { KeyLookup } from "./keys.ts";
import { DEFAULT_URL_TTL_SECONDS, UrlSigner, urlSecret } from "./signing.ts";
import type { AuthMode } from "./viewer.ts";

export interface AccessSettings {
  /** MOSAIC_AUTH: "off" (default; keys optional) or "required". */
  auth: AuthMode;
  quotas: Quotas;
  /** Signed image links live between this and twice this many seconds (MOSAIC_URL_TTL_SECONDS). */
  urlTtlSeconds: number;
  /** Subscriptions one graphql-ws connection may hold at once (MOSAIC_WS_MAX_SUBSCRIPTIONS). */
  maxSubscriptionsPerSocket: number;
}

export const DEFAULT_ACCESS: AccessSettings = { auth: "off", quotas: DEFAULT_QUOTAS, urlTtlSeconds: DEFAULT_URL_TTL_SECONDS, maxSubscriptionsPerSocket: 20 };

export interface Access extends AccessSettings {
  keys: KeyLookup;
  signer: UrlSigner;
}

export async function openAccess(prisma: Prisma, settings: AccessSettings = DEFAULT_ACCESS): Promise<Access> {
  return { ...settings, keys: new KeyLookup(prisma), signer: new UrlSigner(await urlSecret(prisma), settings.urlTtlSeconds) };
}
