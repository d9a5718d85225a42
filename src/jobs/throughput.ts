/**
 * A worker's throughput in images per second, for queued generations' ETAs (written with its
 * heartbeat row). By Little's law it is the images the worker holds on average over the average time
 * an image holds its room (claimed to its last event from the engine), both over about the last
 * `windowSeconds` of busy time: a room comes free that often, and a queued generation starts when
 * enough have.
 *
 * It once was images decoded per second of the engine's steps, averaged over about a second. That
 * missed the time a room is held outside the decoder's steps (the claim, waiting to join the batch,
 * the last events) and said 4.4 images a second where the worker freed rooms at 3.2; and under
 * continuous batching, with runs of short steps between long ones that encode joining prompts or
 * decode finished images, its one-second average swung between 0.4× and 2× of what the worker then
 * sustained: an ETA read at a crest was half the real wait (the flaky backlog check in
 * test/durable.test.ts). Both averages here are sums decayed by busy time, so idle time ages
 * nothing: between jobs a worker reports the throughput it had while working.
 */
export class Throughput {
  private holding = 0;
  private since: number | null = null;
  /** Decayed image-seconds held and busy seconds: the images held on average. */
  private heldImageSeconds = 0;
  private busySeconds = 0;
  /** Decayed seconds held by the images that freed their rooms, and their count: the average hold. */
  private holdSeconds = 0;
  private freedImages = 0;
  private reportedAt = -Infinity;

  constructor(private readonly windowSeconds = 10, private readonly reportEveryMs = 500) {}

  /** `images` more images hold a room from `now` (a generation was claimed). */
  claimed(images: number, now = performance.now()): void {
    this.advance(now);
    this.holding += images;
  }

  /** `images` images that held their rooms for `heldMs` freed them at `now`. */
  freed(images: number, heldMs: number, now = performance.now()): void {
    this.advance(now);
    this.holding = Math.max(0, this.holding - images);
    this.holdSeconds += (images * heldMs) / 1000;
    this.freedImages += images;
  }

  imagesPerSecond(now = performance.now()): number | null {
    this.advance(now);
    if (this.freedImages === 0 || this.busySeconds === 0 || this.holdSeconds === 0) return null;
    return this.heldImageSeconds / this.busySeconds / (this.holdSeconds / this.freedImages);
  }

  /** True twice a second at most: while busy, queued ETAs follow the rate, not only each heartbeat. */
  due(now = performance.now()): boolean {
    if (now - this.reportedAt < this.reportEveryMs) return false;
    this.reportedAt = now;
    return true;
  }

  /** Adds the time since the last change, while something was held, to the decayed sums. */
  private advance(now: number): void {
    const since = this.since;
    this.since = now;
    if (since === null || this.holding === 0 || now <= since) return;
    const keep = Math.exp(-(now - since) / 1000 / this.windowSeconds);
    // The exact integral of a constant under the decay: the older part of the interval weighs less.
    const span = this.windowSeconds * (1 - keep);
    this.heldImageSeconds = this.heldImageSeconds * keep + this.holding * span;
    this.busySeconds = this.busySeconds * keep + span;
    this.holdSeconds *= keep;
    this.freedImages *= keep;
  }
}
