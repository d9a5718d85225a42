/**
 * The engine's settings from the environment: the model folder and the execution provider. Apart
 * from src/config.ts (the server's settings) because the engine's own commands and benchmarks import
 * them, and src/config.ts imports the database layer: the GPU machine's run (bench/gpu.sh) carries
 * neither the Prisma client generated at install nor the database packages.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { badInput } from "./errors.ts";
import { PROVIDERS, type ProviderName } from "./providers.ts";

export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const DEFAULT_MODEL = path.join(PACKAGE_ROOT, "models", "mosaic-shapes");

export function modelFolder(flag?: string): string {
  return path.resolve(flag ?? process.env.MOSAIC_MODEL ?? DEFAULT_MODEL);
}

export function parseProvider(value: string | undefined): ProviderName {
  const v = (value ?? process.env.MOSAIC_PROVIDER ?? "cpu").toLowerCase();
  if (!(PROVIDERS as readonly string[]).includes(v)) throw badInput(`provider must be one of ${PROVIDERS.join(", ")} (got "${v}")`);
  return v as ProviderName;
}
