// Generates the Prisma client (src/db/generated) after install, offline: Prisma's CLI wants to
// download a schema-engine binary for every command, but `generate` never runs it, so any existing
// file satisfies the check. Migrations are applied by src/db/migrate.ts, not by the CLI.
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const cli = require.resolve("prisma/build/index.js");
const env = { ...process.env, PRISMA_SCHEMA_ENGINE_BINARY: process.env.PRISMA_SCHEMA_ENGINE_BINARY ?? process.execPath, PRISMA_HIDE_UPDATE_MESSAGE: "1" };
const r = spawnSync(process.execPath, [cli, "generate"], { stdio: "inherit", env });
process.exit(r.status ?? 1);
