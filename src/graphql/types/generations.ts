import { resolveCursorConnection, type ResolveCursorConnectionArgs } from "@pothos/plugin-relay";
import type { Generation } from "../../db/generated/client.ts";
import { builder } from "../builder.ts";
import { codedError } from "../errors.ts";
import { GenerationRef, StatusEnum } from "./generation.ts";

/** Cursors are (createdAt, id): stable under inserts, unlike offsets. */
function toCursor(g: Generation): string {
  return Buffer.from(`${g.createdAt.toISOString()}|${g.id}`).toString("base64url");
}

function fromCursor(c: string): { createdAt: Date; id: string } {
  const [at, id] = Buffer.from(c, "base64url").toString().split("|");
  const createdAt = new Date(at ?? "");
  if (!id || Number.isNaN(createdAt.getTime())) throw codedError("BAD_INPUT", "invalid cursor");
  return { createdAt, id };
}

function olderThan(c: { createdAt: Date; id: string }) {
  return { OR: [{ createdAt: { lt: c.createdAt } }, { createdAt: c.createdAt, id: { lt: c.id } }] };
}

function newerThan(c: { createdAt: Date; id: string }) {
  return { OR: [{ createdAt: { gt: c.createdAt } }, { createdAt: c.createdAt, id: { gt: c.id } }] };
}

builder.queryField("generations", (t) =>
  t.connection({
    type: GenerationRef,
    description: "Generations, newest first, optionally filtered by status and by text in the prompt.",
    args: {
      status: t.arg({ type: [StatusEnum], description: "Only these statuses." }),
      promptContains: t.arg.string({ description: "Only prompts containing this text (case-insensitive)." }),
    },
    resolve: (_, args, ctx) =>
      resolveCursorConnection({ args, toCursor, defaultSize: 20, maxSize: 100 }, ({ before, after, limit, inverted }: ResolveCursorConnectionArgs) => {
        const where = {
          AND: [
            args.status?.length ? { status: { in: args.status } } : {},
            args.promptContains ? { prompt: { contains: args.promptContains, mode: "insensitive" as const } } : {},
            after ? olderThan(fromCursor(after)) : {},
            before ? newerThan(fromCursor(before)) : {},
          ],
        };
        const dir = inverted ? "asc" : "desc";
        return ctx.prisma.generation.findMany({ where, orderBy: [{ createdAt: dir }, { id: dir }], take: limit });
      }),
  }),
);
