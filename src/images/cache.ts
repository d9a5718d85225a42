/**
 * Encoded pictures, kept by what they show and how they were asked for. A picture never changes
 * once stored (an image or preview id always has the same bytes; a mosaic is fixed by its
 * generation, token count and index), so a key names its encoding for good: a hundred subscribers
 * of one progress event, or a hundred requests for one thumbnail, cost one encode. Encodes in
 * flight are shared as well. Bounded by bytes (lru-cache), least recently used first out.
 */
import { LRUCache } from "lru-cache";
import { transcode, type EncodeOptions } from "./encode.ts";

/** Where a stored picture lives: a final image or a preview (also the first part of its URL). */
export type PictureKind = "images" | "previews";

const MAX_BYTES = 64 * 1024 * 1024;

const done = new LRUCache<string, Buffer>({ maxSize: MAX_BYTES, sizeCalculation: (b) => Math.max(1, b.length) });
const inFlight = new Map<string, Promise<Buffer>>();

/** Encodes made (cache misses), for the tests. */
export const encodeStats = { misses: 0 };

export function cachedEncode(key: string, encode: () => Promise<Buffer>): Promise<Buffer> {
  const hit = done.get(key);
  if (hit) return Promise.resolve(hit);
  let p = inFlight.get(key);
  if (p) return p;
  encodeStats.misses++;
  p = encode().then((b) => {
    done.set(key, b);
    return b;
  }).finally(() => inFlight.delete(key));
  inFlight.set(key, p);
  return p;
}

class Gone extends Error {}

/**
 * A stored picture (a PNG `nativeWidth` wide) in the asked encoding, through the cache: `load` reads
 * its PNG only on a miss, and null from it (the picture is gone) makes this null.
 */
export async function encodedPicture(
  kind: PictureKind, id: string, nativeWidth: number, options: Required<Pick<EncodeOptions, "format" | "upscale">> & Pick<EncodeOptions, "width">,
  load: () => Promise<Uint8Array | null>,
): Promise<Buffer | null> {
  try {
    return await cachedEncode(`${kind}:${id}:${options.format}:${options.width ?? ""}:${options.upscale}`, async () => {
      const png = await load();
      if (!png) throw new Gone();
      return transcode(png, nativeWidth, options);
    });
  } catch (e) {
    if (e instanceof Gone) return null;
    throw e;
  }
}
