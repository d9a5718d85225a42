/** Settings that come from the environment, with their defaults, in one place. */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { badInput } from "./engine/errors.ts";
import { PROVIDERS, type ProviderName } from "./engine/providers.ts";

export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const DEFAULT_MODEL = path.join(PACKAGE_ROOT, "models", "mosaic-shapes");

export function modelFolder(flag?: string): string {
  return path.resolve(flag ?? process.env.MOSAIC_MODEL ?? DEFAULT_MODEL);
}

export function parseProvider(value: string | undefined): ProviderName {
  const v = (value ?? process.env.MOSAIC_PROVIDER ?? "cpu").toLowerCase();
  if (!(PROVIDERS as readonly string[]).includes(v)) throw badInput(`provider must be one of ${PROVIDERS.join(", ")} (got "${v}")`);
  return v as ProviderName;
}
