/** Token grids stored with a generation, for per-token mosaics: int16 little-endian, image after image. */
export function packCodes(grids: Int32Array[]): Uint8Array<ArrayBuffer> {
  const cells = grids[0]?.length ?? 0;
  const out = new Uint8Array(grids.length * cells * 2);
  const view = new DataView(out.buffer);
  grids.forEach((g, i) => g.forEach((c, j) => view.setInt16((i * cells + j) * 2, c, true)));
  return out;
}

export function unpackCodes(bytes: Uint8Array, count: number): Int32Array[] {
  const cells = bytes.length / 2 / count;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from({ length: count }, (_, i) => Int32Array.from({ length: cells }, (_, j) => view.getInt16((i * cells + j) * 2, true)));
}
