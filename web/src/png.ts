/**
 * PNG text chunks, written in the browser when an image is downloaded: the prompt, seed, model and
 * settings travel with the file, like AUTOMATIC1111's `parameters` chunk (which tools such as
 * stable-diffusion-webui's "PNG Info" read). A PNG is a signature and chunks (length, type, data,
 * CRC-32 of type and data); text chunks go right after IHDR, before the image data, so readers that
 * stop early see them. Latin-1 text is a tEXt chunk, anything else an uncompressed iTXt (UTF-8).
 * No DOM here: the tests run it in Node.
 */

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(bytes: Uint8Array, crc = 0xffffffff): number {
  let c = crc;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return c;
}

export function isPng(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && SIGNATURE.every((b, i) => bytes[i] === b);
}

const latin1 = (s: string) => [...s].every((ch) => ch.codePointAt(0)! <= 0xff && ch !== "\u0000");

/** One chunk, with its length and CRC. */
export function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, (crc32(out.subarray(4, 8 + data.length)) ^ 0xffffffff) >>> 0);
  return out;
}

/** A text chunk: tEXt for Latin-1 text, iTXt (UTF-8, uncompressed) otherwise. Keywords are 1-79 Latin-1 characters. */
export function textChunk(keyword: string, text: string): Uint8Array {
  if (!/^[\x20-\x7e\xa1-\xff]{1,79}$/.test(keyword)) throw new Error(`bad PNG text keyword: ${keyword}`);
  const key = Uint8Array.from(keyword, (c) => c.charCodeAt(0));
  if (latin1(text)) {
    const body = Uint8Array.from(text, (c) => c.charCodeAt(0));
    const data = new Uint8Array(key.length + 1 + body.length);
    data.set(key, 0);
    data.set(body, key.length + 1);
    return chunk("tEXt", data);
  }
  // iTXt: keyword, 0, compression flag 0, method 0, empty language tag, 0, empty translated keyword, 0, UTF-8 text.
  const body = new TextEncoder().encode(text);
  const data = new Uint8Array(key.length + 5 + body.length);
  data.set(key, 0);
  data.set(body, key.length + 5);
  return chunk("iTXt", data);
}

/** The PNG with text chunks added after IHDR (the file is otherwise unchanged, byte for byte). */
export function addTextChunks(png: Uint8Array, entries: Record<string, string>): Uint8Array {
  if (!isPng(png)) throw new Error("not a PNG");
  const ihdrLength = new DataView(png.buffer, png.byteOffset, png.byteLength).getUint32(8);
  const at = 8 + 12 + ihdrLength; // signature, then IHDR's length, type, data and CRC
  const chunks = Object.entries(entries).map(([k, v]) => textChunk(k, v));
  const out = new Uint8Array(png.length + chunks.reduce((n, c) => n + c.length, 0));
  out.set(png.subarray(0, at), 0);
  let o = at;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  out.set(png.subarray(at), o);
  return out;
}

/** Every text chunk of a PNG (tEXt and uncompressed iTXt), keyword to text; for tests and checks. */
export function readTextChunks(png: Uint8Array): Record<string, string> {
  if (!isPng(png)) throw new Error("not a PNG");
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const out: Record<string, string> = {};
  for (let o = 8; o + 12 <= png.length; ) {
    const length = view.getUint32(o);
    const type = String.fromCharCode(...png.subarray(o + 4, o + 8));
    const data = png.subarray(o + 8, o + 8 + length);
    const zero = data.indexOf(0);
    if (type === "tEXt" && zero > 0) out[String.fromCharCode(...data.subarray(0, zero))] = String.fromCharCode(...data.subarray(zero + 1));
    if (type === "iTXt" && zero > 0 && data[zero + 1] === 0) {
      let p = zero + 3;
      p = data.indexOf(0, p) + 1; // language tag
      p = data.indexOf(0, p) + 1; // translated keyword
      out[String.fromCharCode(...data.subarray(0, zero))] = new TextDecoder().decode(data.subarray(p));
    }
    if (type === "IEND") break;
    o += 12 + length;
  }
  return out;
}

export interface ImageInfo {
  prompt: string;
  seed: number;
  model: string;
  modelVersion?: string;
  width: number;
  height: number;
  steps: number;
  guidanceScale: number;
  topK: number;
  topP: number;
  temperature: number;
  generationId?: string;
  index?: number;
}

/**
 * The text chunks of a downloaded image: `parameters` in AUTOMATIC1111's layout (the prompt, then
 * "Key: value" pairs on one line), `Description` with the prompt, `Software`, and `mosaic` as JSON.
 */
export function pngText(info: ImageInfo): Record<string, string> {
  const pairs = [
    ["Steps", info.steps], ["Sampler", info.topK === 1 || info.temperature === 0 ? "greedy" : "top-k/top-p"],
    ["CFG scale", info.guidanceScale], ["Seed", info.seed], ["Size", `${info.width}x${info.height}`],
    ["Model", info.model], ...(info.modelVersion ? [["Model version", info.modelVersion]] : []),
    ["Top-k", info.topK], ["Top-p", info.topP], ["Temperature", info.temperature],
  ] as [string, string | number][];
  return {
    parameters: `${info.prompt}\n${pairs.map(([k, v]) => `${k}: ${v}`).join(", ")}`,
    Description: info.prompt,
    Software: "Mosaic",
    mosaic: JSON.stringify(info),
  };
}
