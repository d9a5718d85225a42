/**
 * A worker's decoding rate in images per second, from the engine thread's wall time between step
 * boundaries (everything the engine does, not only the decoder): an exponential average over about
 * the last second of work. Queued generations' ETAs divide the work ahead by it (written with the
 * worker's heartbeat row).
 */
export class DecodeRate {
  private rate: number | null = null;
  private reportedAt = 0;

  /** `tokensPerImage`: decoder steps per image (the model's grid). */
  constructor(private readonly tokensPerImage: number, private readonly reportEveryMs = 500) {}

  get imagesPerSecond(): number | null {
    return this.rate;
  }

  /**
   * Adds one step of `images` images that took `wallMs`; true when the rate is due to be reported
   * (twice a second while busy, so queued ETAs follow it, not only with each heartbeat).
   */
  add(images: number, wallMs: number, now = performance.now()): boolean {
    if (images === 0 || wallMs <= 0) return false;
    const rate = images / this.tokensPerImage / (wallMs / 1000);
    const w = Math.min(1, wallMs / 1_000);
    this.rate = this.rate === null ? rate : this.rate * (1 - w) + rate * w;
    if (now - this.reportedAt < this.reportEveryMs) return false;
    this.reportedAt = now;
    return true;
  }
}
