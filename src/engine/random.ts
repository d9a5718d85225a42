/**
 * mulberry32: a tiny 32-bit PRNG, chosen because it is bit-for-bit reproducible in Python
 * (training/mosaic_train/sampling.py), so seeded images can be checked against the reference.
 */
export class Mulberry32 {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  nextU32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    const a = this.state;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = ((t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t) >>> 0;
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    return this.nextU32() / 4294967296;
  }
}

/** Each image of a generation gets its own seed (and stream): the generation seed + its index
 * (wrapping within 31 bits, so every seed fits a GraphQL Int and a PostgreSQL integer). */
export function imageSeed(seed: number, index: number): number {
  return (seed + index) % 2 ** 31;
}

export function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 31);
}
