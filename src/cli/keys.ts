/** `mosaic keys create <name> [--admin]`, `mosaic keys list`, `mosaic keys revoke <name>`. */
import { parseArgs } from "node:util";
import { createKey, listKeys, revokeKey } from "../auth/keys.ts";
import { serverConfig } from "../config.ts";
import { openDatabase } from "../db/client.ts";
import { runningEmbeddedUrl } from "../db/embedded.ts";
import { badInput } from "../engine/errors.ts";

export const KEYS_HELP = `Usage: mosaic keys create <name> [--admin]   a new API key, printed once as the last line
       mosaic keys list                     names, roles, dates (never the keys)
       mosaic keys revoke <name>            the key stops working within seconds

Keys are stored hashed (SHA-256) in the database DATABASE_URL (or the embedded one) names. Clients send
Authorization: Bearer <key>, or connectionParams { authorization: "Bearer <key>" } over graphql-ws.
An admin key sees, cancels and deletes every generation and has no per-key quotas.
`;

export async function runKeys(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { admin: { type: "boolean" }, help: { type: "boolean", short: "h" } } });
  const [command, name, ...extra] = positionals;
  if (values.help || command === undefined) {
    process.stdout.write(KEYS_HELP);
    return;
  }
  if (extra.length) throw badInput(`unexpected arguments: ${extra.join(" ")}`);
  if (command !== "list" && command !== "create" && command !== "revoke") throw badInput(`unknown keys command "${command}" (create, list or revoke)`);
  if (command !== "list" && !name) throw badInput(`mosaic keys ${command} needs a key name`);
  const config = serverConfig();
  // Quiet: this command's output is for people and scripts, the database's start-up lines are not.
  // A server already running the embedded database holds it: talk to that one.
  const url = config.databaseUrl ?? (await runningEmbeddedUrl(config.dataDir)) ?? undefined;
  const db = await openDatabase({ url, dataDir: config.dataDir, embeddedPort: config.embeddedPort, log: () => {} });
  try {
    if (command === "create") {
      const { key, info } = await createKey(db.prisma, name!, values.admin ?? false);
      process.stdout.write(`created ${info.admin ? "admin " : ""}key "${info.name}"; it is shown only now, store it safely:\n${key}\n`);
    } else if (command === "revoke") {
      const info = await revokeKey(db.prisma, name!);
      process.stdout.write(`revoked key "${info.name}"\n`);
    } else {
      const keys = await listKeys(db.prisma);
      if (!keys.length) process.stdout.write("no keys yet (mosaic keys create <name>)\n");
      for (const k of keys) {
        process.stdout.write(`${k.name}\t${k.admin ? "admin" : "user"}\tcreated ${k.createdAt.toISOString()}\t${k.revokedAt ? `revoked ${k.revokedAt.toISOString()}` : "active"}\n`);
      }
    }
  } finally {
    await db.close();
  }
}
