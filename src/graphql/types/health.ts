import { builder } from "../builder.ts";
import type { Context } from "../context.ts";

interface Health {
  database: boolean;
  queued: number;
  running: number;
}

export async function checkHealth(ctx: Pick<Context, "prisma">): Promise<Health> {
  try {
    const rows = await ctx.prisma.generation.groupBy({ by: ["status"], where: { status: { in: ["QUEUED", "RUNNING"] } }, _count: true });
    const n = (s: string) => rows.find((r) => r.status === s)?._count ?? 0;
    return { database: true, queued: n("QUEUED"), running: n("RUNNING") };
  } catch {
    return { database: false, queued: 0, running: 0 };
  }
}

const HealthRef = builder.objectRef<Health>("Health").implement({
  description: "Whether the server can do its work.",
  fields: (t) => ({
    ok: t.boolean({ description: "True when the database answers.", resolve: (h) => h.database }),
    database: t.exposeBoolean("database", { description: "The database answered." }),
    role: t.string({ description: "This process's role: all (API and worker), api or worker.", resolve: (_, __, ctx) => ctx.role }),
    queued: t.exposeInt("queued", { description: "Generations waiting." }),
    running: t.exposeInt("running", { description: "Generations being generated." }),
    uptimeSeconds: t.float({ description: "Seconds since this process started.", resolve: (_, __, ctx) => (Date.now() - ctx.startedAt.getTime()) / 1000 }),
  }),
});

builder.queryField("health", (t) => t.field({ type: HealthRef, description: "Server health.", resolve: (_, __, ctx) => checkHealth(ctx) }));
