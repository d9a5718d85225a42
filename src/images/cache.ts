/**
 * Encoded pictures, kept by what they show and how they were asked for. A picture never changes
 * once stored (an image or preview id always has the same bytes; a mosaic is fixed by its
 * generation, token count and index), so a key names its encoding for good: a hundred subscribers
 * of one progress event, or a hundred requests for one thumbnail, cost one encode. Encodes in
 * flight are shared as well. Bounded by bytes (lru-cache), least recently used first out.
 */
import { LRUCache } from "lru-cache";

const MAX_BYTES = 64 * 1024 * 1024;

const done = new LRUCache<string, Buffer>({ maxSize: MAX_BYTES, sizeCalculation: (b) => Math.max(1, b.length) });
const inFlight = new Map<string, Promise<Buffer>>();

export const encodeStats = { hits: 0, misses: 0 };

export function cachedEncode(key: string, encode: () => Promise<Buffer>): Promise<Buffer> {
  const hit = done.get(key);
  if (hit) {
    encodeStats.hits++;
    return Promise.resolve(hit);
  }
  let p = inFlight.get(key);
  if (p) {
    encodeStats.hits++;
    return p;
  }
  encodeStats.misses++;
  p = encode().then((b) => {
    done.set(key, b);
    return b;
  }).finally(() => inFlight.delete(key));
  inFlight.set(key, p);
  return p;
}
