/** Picture bytes are read only when encoded, and a page's images in one query (dataloader), with a cache of encodes. */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Prisma } from "../src/db/client.ts";
import { createLoaders } from "../src/graphql/loaders.ts";
import { cachedEncode, encodeStats } from "../src/images/cache.ts";

function fakePrisma() {
  const calls: { model: string; args: Record<string, unknown> }[] = [];
  const model = (name: string) => ({
    findMany: async (args: Record<string, unknown>) => {
      calls.push({ model: name, args });
      const where = args.where as { generationId?: { in: string[] }; id?: { in: string[] } };
      if (where.generationId) return where.generationId.in.flatMap((g) => [0, 1].map((index) => ({ id: `${g}-${index}`, generationId: g, index })));
      return where.id!.in.map((id) => ({ id, bytes: new Uint8Array([1, 2, 3]) }));
    },
  });
  return { calls, prisma: { image: model("image"), preview: model("preview") } as unknown as Prisma };
}

test("a page of generations loads its images in one query, without bytes", async () => {
  const { calls, prisma } = fakePrisma();
  const loaders = createLoaders(prisma);
  const pages = await Promise.all(["g1", "g2", "g3"].map((g) => loaders.imagesOf.load(g)));
  assert.equal(calls.length, 1);
  assert.deepEqual(calls[0]!.args.omit, { bytes: true });
  assert.deepEqual(pages.map((p) => p.map((i) => i.id)), [["g1-0", "g1-1"], ["g2-0", "g2-1"], ["g3-0", "g3-1"]]);
});

test("bytes are loaded per kind in one query each, and only when asked", async () => {
  const { calls, prisma } = fakePrisma();
  const loaders = createLoaders(prisma);
  const got = await Promise.all(["images:a", "previews:b", "images:c"].map((k) => loaders.bytes.load(k)));
  assert.equal(calls.length, 2);
  assert.deepEqual(calls.map((c) => c.model).sort(), ["image", "preview"]);
  assert.ok(got.every((b) => b && b.length === 3));
});

test("an encode is made once however many ask at the same time or later", async () => {
  let encodes = 0;
  const encode = async () => {
    encodes++;
    await new Promise((r) => setTimeout(r, 10));
    return Buffer.from("png");
  };
  const before = encodeStats.misses;
  const results = await Promise.all(Array.from({ length: 50 }, () => cachedEncode("test:once", encode)));
  await cachedEncode("test:once", encode);
  assert.equal(encodes, 1);
  assert.equal(encodeStats.misses - before, 1);
  assert.ok(results.every((b) => b.toString() === "png"));
});
