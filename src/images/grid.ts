/** A contact sheet: N frames of one size laid out in a near-square grid with a thin gutter. */
import type { Frame } from "../engine/generate.ts";

export function gridColumns(n: number): number {
  return Math.ceil(Math.sqrt(n));
}

export function contactSheet(frames: Frame[], gutter = 2, background = 255): Frame {
  if (frames.length === 0) throw new Error("contactSheet needs at least one frame");
  const { width: w, height: h } = frames[0]!;
  const cols = gridColumns(frames.length);
  const rows = Math.ceil(frames.length / cols);
  const width = cols * w + (cols - 1) * gutter;
  const height = rows * h + (rows - 1) * gutter;
  const data = new Uint8Array(width * height * 3).fill(background);
  frames.forEach((f, i) => {
    const x0 = (i % cols) * (w + gutter);
    const y0 = Math.floor(i / cols) * (h + gutter);
    for (let y = 0; y < h; y++) {
      data.set(f.data.subarray(y * w * 3, (y + 1) * w * 3), ((y0 + y) * width + x0) * 3);
    }
  });
  return { width, height, data };
}
