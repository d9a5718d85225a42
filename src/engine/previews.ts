/**
 * Pictures of a partly generated token grid.
 *
 * Positions not generated yet are filled with the code generated most often so far: that is
 * usually the background, so the image reads as "being revealed" from the top. Measured on a model
 * like ours, a fixed code paints the rest in that code's colour, the mean codebook vector gives a
 * grey-purple block, and repeating the last row stretches objects into vertical bars.
 */

/** The grid with positions ≥ done replaced by the most frequent code among the first `done`. */
export function filledGrid(codes: Int32Array, done: number, codebookSize: number): Int32Array {
  const out = codes.slice();
  if (done >= codes.length) return out;
  const fill = done === 0 ? 0 : mostFrequent(codes, done, codebookSize);
  out.fill(fill, done);
  return out;
}

/**
 * What a preview decodes after `done` tokens. With a VQ graph of fixed rows, the whole filled grid.
 * With free rows (model.json's `codes` shape says "rows"), only the rows begun so far (the rest of the
 * last one filled): the VQGAN's time grows with the rows it decodes, so the first preview of a
 * DALL·E-mini 256×256 image (2 rows of 16 after 32 tokens) costs 2/16 of a whole decode; `decodeGrids`
 * paints the rest of the frame in the fill code's colour (vq.ts). The last preview, the final image,
 * is always the whole grid.
 */
export function previewGrid(codes: Int32Array, done: number, codebookSize: number, grid: { height: number; width: number }, freeRows: boolean): Int32Array {
  const filled = filledGrid(codes, done, codebookSize);
  if (!freeRows || done >= codes.length) return filled;
  const rows = Math.max(1, Math.ceil(done / grid.width));
  return rows >= grid.height ? filled : filled.slice(0, rows * grid.width);
}

export function mostFrequent(codes: Int32Array, done: number, codebookSize: number): number {
  const counts = new Uint32Array(codebookSize);
  let best = codes[0]!;
  for (let i = 0; i < done; i++) {
    const c = codes[i]!;
    if (++counts[c]! > counts[best]!) best = c;
  }
  return best;
}

export interface MosaicGeometry {
  gridHeight: number;
  gridWidth: number;
  patchSize: number;
}

/**
 * The zero-cost preview: each code drawn as its precomputed patch (no VQ decoder run), so a client
 * can show every token as it arrives. Returns RGB bytes [gridHeight·patch, gridWidth·patch, 3].
 */
export function mosaic(codes: Int32Array, done: number, patches: Uint8Array, g: MosaicGeometry, codebookSize: number): Uint8Array {
  const p = g.patchSize;
  const width = g.gridWidth * p;
  const out = new Uint8Array(g.gridHeight * p * width * 3);
  if (done === 0) return out.fill(128);
  const grid = filledGrid(codes, done, codebookSize);
  const patchBytes = p * p * 3;
  for (let gy = 0; gy < g.gridHeight; gy++) {
    for (let gx = 0; gx < g.gridWidth; gx++) {
      const src = grid[gy * g.gridWidth + gx]! * patchBytes;
      for (let y = 0; y < p; y++) {
        const row = ((gy * p + y) * width + gx * p) * 3;
        out.set(patches.subarray(src + y * p * 3, src + (y + 1) * p * 3), row);
      }
    }
  }
  return out;
}

/** Token counts at which a VQ preview is due: every `interval` tokens, and always the last. */
export function previewSchedule(total: number, interval: number, plan = 0): Set<number> {
  const due = new Set<number>();
  if (interval <= 0) return due;
  // Counted in codes: a plan's tokens come first and show nothing.
  for (let t = plan + interval; t < total; t += interval) due.add(t);
  due.add(total);
  return due;
}
