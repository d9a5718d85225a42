/**
 * Per-request batching (dataloader): a page of generations asks for its images in one query, and
 * picture bytes are read only by the fields that encode them (`dataUrl`), in one query per kind,
 * never for `url` or sizes. Rows without their bytes are what resolvers pass around.
 */
import DataLoader from "dataloader";
import type { Prisma } from "../db/client.ts";
import type { Image, Preview } from "../db/generated/client.ts";
import type { PictureKind } from "../images/cache.ts";

export type ImageRow = Omit<Image, "bytes">;
export type PreviewRow = Omit<Preview, "bytes">;

export interface Loaders {
  /** A generation's final images, in order, without bytes. */
  imagesOf: DataLoader<string, ImageRow[]>;
  /** A picture's stored PNG, by `${kind}:${id}` (null when it is gone). */
  bytes: DataLoader<string, Uint8Array | null>;
}

export function createLoaders(prisma: Prisma): Loaders {
  return {
    imagesOf: new DataLoader(async (ids) => {
      const rows = await prisma.image.findMany({ where: { generationId: { in: [...ids] } }, omit: { bytes: true }, orderBy: { index: "asc" } });
      return ids.map((id) => rows.filter((r) => r.generationId === id));
    }),
    bytes: new DataLoader(async (keys) => {
      const want = (kind: PictureKind) => keys.filter((k) => k.startsWith(`${kind}:`)).map((k) => k.slice(kind.length + 1));
      const [images, previews] = await Promise.all([
        want("images").length ? prisma.image.findMany({ where: { id: { in: want("images") } }, select: { id: true, bytes: true } }) : [],
        want("previews").length ? prisma.preview.findMany({ where: { id: { in: want("previews") } }, select: { id: true, bytes: true } }) : [],
      ]);
      const found = new Map<string, Uint8Array>([...images.map((r) => [`images:${r.id}`, r.bytes] as const), ...previews.map((r) => [`previews:${r.id}`, r.bytes] as const)]);
      return keys.map((k) => found.get(k) ?? null);
    }),
  };
}
