/**
 * The pictures of a generation's grid, one cell per image, that only ever get finer: a per-token
 * mosaic, then the decoder's previews, then the final image, and within a stage only more tokens.
 * A candidate is loaded before it is shown (offer → settle), so a slow download never puts a coarser
 * picture over a finer one that arrived meanwhile. No DOM here: the tests run it in Node.
 */

export type Stage = "mosaic" | "preview" | "final";

export interface Picture {
  stage: Stage;
  /** Tokens of the image this picture shows (the total for a final image). */
  tokens: number;
  url: string;
  /** The image's own seed, when known (final images). */
  seed?: number;
  /** The image's node id (final images), for the larger view and downloads. */
  id?: string;
}

const RANK: Record<Stage, number> = { mosaic: 1, preview: 2, final: 3 };

/** Whether `a` shows more than `b` (nothing shows less than anything). */
export function finer(a: Picture, b: Picture | null | undefined): boolean {
  if (!b) return true;
  if (RANK[a.stage] !== RANK[b.stage]) return RANK[a.stage] > RANK[b.stage];
  return a.tokens > b.tokens;
}

export class Board {
  private shown: (Picture | null)[];
  private loading: (Picture | null)[];

  constructor(readonly count: number) {
    this.shown = Array.from({ length: count }, () => null);
    this.loading = Array.from({ length: count }, () => null);
  }

  /** Whether to load `p` for cell `i`: it is finer than what is shown and than what is loading. */
  offer(i: number, p: Picture): boolean {
    if (i < 0 || i >= this.count) return false;
    if (!finer(p, this.shown[i]) || !finer(p, this.loading[i])) return false;
    this.loading[i] = p;
    return true;
  }

  /** `p` has loaded (ok) or failed: whether the cell now shows it. */
  settle(i: number, p: Picture, ok = true): boolean {
    if (this.loading[i] === p) this.loading[i] = null;
    if (!ok || !finer(p, this.shown[i])) return false;
    this.shown[i] = p;
    return true;
  }

  cells(): (Picture | null)[] {
    return [...this.shown];
  }
}
