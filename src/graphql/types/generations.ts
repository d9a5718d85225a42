import { resolveCursorConnection, type ResolveCursorConnectionArgs } from "@pothos/plugin-relay";
import type { Generation } from "../../db/generated/client.ts";
import { visibleTo } from "../../auth/viewer.ts";
import { builder } from "../builder.ts";
import { codedError } from "../errors.ts";
import { isUuid } from "./image.ts";
import { GenerationRef, StatusEnum } from "./generation.ts";

/**
 * Prisma's `contains` is PostgreSQL's ILIKE with the text as the pattern, unescaped (prisma/orm#19506):
 * "%" and "_" in a search matched anything. Escaped with LIKE's default escape character, they are
 * the characters themselves.
 */
const literalLike = (text: string) => text.replace(/[\\%_]/g, "\\$&");

/** Cursors are (createdAt, id): stable under inserts, unlike offsets. */
function toCursor(g: Generation): string {
  return Buffer.from(`${g.createdAt.toISOString()}|${g.id}`).toString("base64url");
}

/** A cursor this server made: a time PostgreSQL can hold and a row id; anything else is BAD_INPUT. */
function fromCursor(c: string): { createdAt: Date; id: string } {
  const [at, id, ...rest] = Buffer.from(c, "base64url").toString().split("|");
  const createdAt = new Date(at ?? "");
  const year = createdAt.getUTCFullYear();
  if (rest.length || !id || !isUuid(id) || Number.isNaN(createdAt.getTime()) || year < 2000 || year > 9999) throw codedError("BAD_INPUT", "invalid cursor");
  return { createdAt, id };
}

function olderThan(c: { createdAt: Date; id: string }) {
  return { OR: [{ createdAt: { lt: c.createdAt } }, { createdAt: c.createdAt, id: { lt: c.id } }] };
}

function newerThan(c: { createdAt: Date; id: string }) {
  return { OR: [{ createdAt: { gt: c.createdAt } }, { createdAt: c.createdAt, id: { gt: c.id } }] };
}

/** mine: true, only the key's own; false, none of them (and all when there is no key); null, no filter. */
function ownedBy(keyId: string | null, mine: boolean | null | undefined) {
  if (mine == null) return {};
  if (mine) return keyId ? { ownerKeyId: keyId } : { id: { in: [] } };
  return keyId ? { OR: [{ ownerKeyId: null }, { NOT: { ownerKeyId: keyId } }] } : {};
}

builder.queryField("generations", (t) =>
  t.connection({
    type: GenerationRef,
    description: "Generations this request may see (its key's own and the public ones; an admin key sees all), newest first, optionally filtered by status, owner and text in the prompt.",
    args: {
      mine: t.arg.boolean({ description: "Only (true) or never (false) those this request's API key created." }),
      status: t.arg({ type: [StatusEnum], description: "Only these statuses." }),
      promptContains: t.arg.string({ description: "Only prompts containing this text (case-insensitive)." }),
    },
    resolve: (_, args, ctx) => {
      for (const n of [args.first, args.last]) if (n != null && n < 0) throw codedError("BAD_INPUT", "first and last must be 0 or more");
      // PostgreSQL text cannot hold U+0000, so no prompt contains it.
      if (args.promptContains?.includes("\u0000")) throw codedError("BAD_INPUT", "promptContains must not contain U+0000");
      return resolveCursorConnection({ args, toCursor, defaultSize: 20, maxSize: 100 }, ({ before, after, limit, inverted }: ResolveCursorConnectionArgs) => {
        const where = {
          AND: [
            visibleTo(ctx.viewer),
            ownedBy(ctx.viewer.key?.id ?? null, args.mine),
            args.status?.length ? { status: { in: args.status } } : {},
            args.promptContains ? { prompt: { contains: literalLike(args.promptContains), mode: "insensitive" as const } } : {},
            after ? olderThan(fromCursor(after)) : {},
            before ? newerThan(fromCursor(before)) : {},
          ],
        };
        const dir = inverted ? "asc" : "desc";
        return ctx.prisma.generation.findMany({ where, orderBy: [{ createdAt: dir }, { id: dir }], take: limit });
      });
    },
  }),
);
