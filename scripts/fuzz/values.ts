/** Hostile values: strings, numbers, global ids and cursors that have broken servers before, and the real ids a run found. */
import type { Rng } from "./rng.ts";

/** Strings that have broken servers before. None contains a leak needle (see NEEDLES). */
export const NASTY = [
  "", " ", "\u0000", "a\u0000b", "\ud800", "\udfff", "x\udc00y", "\ud83d", "\ufeff", "\u202eevil", "💥🦄", "e\u0301\u0301\u0301", "\u2028\u2029",
  "\t\n\r", "\u001b[31m", "\u0007", "\uffff", "\ufffe", "%00", "%s%n%x", "' OR '1'='1", "\"; DROP TABLE generation; --", "${7*7}", "{{7*7}}",
  "<script>alert(1)</script>", "../../../etc/passwd", "\\", "\"", "NaN", "Infinity", "-Infinity", "-0", "1e309", "0x1F", "null", "undefined",
  "true", "[]", "{}", "__proto__", "constructor", "toString", "hasOwnProperty", "a big red circle in the centre, blue background",
];
export const NAN_LIKE = ["NaN", "Infinity", "-Infinity", "1e309", "-1e309", "0x10", "1_000", " 1", "1 ", "", "null", "--1", "+1", "1e-400", "0b1", "١٢٣"];
export const EDGE_INTS = [0, -1, 1, 2, 9, 10, 100, 101, 1024, 1025, 2147483647, -2147483648, 2147483648, -2147483649, 9007199254740991, 9007199254740993];
export const EDGE_FLOATS = [0, -0, 0.5, 1, 1.5, 100, 100.0001, -1e-320, 1e308, Number.MAX_VALUE, Number.MIN_VALUE, 0.1 + 0.2];
/** Number literals as GraphQL and JSON see them (JSON has no NaN; these are its extremes). */
export const BIG_LITERALS = ["99999999999999999999999999999", "-99999999999999999999999999999", "1e99999", "-1e99999", "1e-99999", "2147483648", "-0", "0.0000000000000000000001"];

export function unicodeChar(r: Rng): string {
  switch (r.int(0, 7)) {
    case 0: return String.fromCharCode(r.int(0, 31));
    case 1: return String.fromCharCode(r.int(0xd800, 0xdfff)); // a lone surrogate
    case 2: return String.fromCodePoint(r.int(0x10000, 0x10ffff));
    case 3: return String.fromCharCode(r.int(0x80, 0x2fff));
    case 4: return String.fromCharCode(r.pick([0xfffe, 0xffff, 0xfeff, 0x202e, 0x200b, 0x0085, 0x00a0]));
    default: return String.fromCharCode(r.int(0x20, 0x7e));
  }
}

export function hostileString(r: Rng): string {
  switch (r.weighted([[3, 0], [3, 1], [1, 2], [2, 3], [2, 4], [1, 5]] as const)) {
    case 0: return r.pick(NASTY);
    case 1: {
      let s = "";
      for (let i = r.int(1, 40); i > 0; i--) s += unicodeChar(r);
      return s;
    }
    case 2: { // long: past the prompt limit, up to about 60 KB
      const unit = r.chance(0.5) ? r.pick(NASTY) || "x" : unicodeChar(r);
      const len = r.pick([1000, 2001, 10_000, 30_000, 60_000]);
      return unit.repeat(Math.ceil(len / Math.max(1, unit.length))).slice(0, len);
    }
    case 3: return r.pick(NAN_LIKE);
    case 4: return r.pick(NASTY) + unicodeChar(r) + r.pick(NASTY);
    default: return r.pick(["circle", "a small yellow triangle on the left, purple background", "red", "square", "x"]);
  }
}

const b64 = (s: string) => Buffer.from(s).toString("base64");
const b64url = (s: string) => Buffer.from(s).toString("base64url");

/** Real ids, cursors and picture ids found on the server before fuzzing. */
export interface KnownIds {
  generations: string[];
  images: string[];
  imageUuids: string[];
  previewUuids: string[];
  /** Real picture URLs as the API gave them (path and query: a signed link stays valid). */
  pictureUrls: string[];
  cursors: string[];
}

export const NO_IDS: KnownIds = { generations: [], images: [], imageUuids: [], previewUuids: [], pictureUrls: [], cursors: [] };

export function globalId(r: Rng, ids: KnownIds): string {
  const real = [...ids.generations, ...ids.images];
  return r.weighted<() => string>([
    [3, () => (real.length ? r.pick(real) : b64(`Generation:${r.uuid()}`))],
    [2, () => b64(`Generation:${r.uuid()}`)],
    [2, () => b64(`${r.pick(["Generation", "Image", "Preview", "Node", "Query", "nope", "", "__proto__"])}:${r.pick([r.uuid(), hostileString(r), "", "1", "::"])}`)],
    [2, () => r.pick(["abc", "", "====", "R2VuZXJhdGlvbjp4", "Generation:" + r.uuid(), r.uuid(), "%", "\u0000", "A".repeat(r.int(1, 5000))])],
    [1, () => b64(hostileString(r))],
    [1, () => hostileString(r)],
    [1, () => (real.length ? r.pick(real).slice(0, -r.int(1, 4)) : "x")],
    [1, () => b64url(`Generation:${r.uuid()}`)],
  ])();
}

export function cursor(r: Rng, ids: KnownIds): string {
  const dates = ["2026-01-01T00:00:00.000Z", "garbage", "+275760-09-13T00:00:00.000Z", "-271821-04-20T00:00:00.000Z", "0000-01-01", "2020-02-30",
    "", "1970-01-01", "9999-12-31T23:59:59.999Z", "Infinity", String(r.int(-1e9, 1e9))];
  const uuids = () => r.pick([r.uuid(), "not-a-uuid", "", "'; --", hostileString(r), ...ids.imageUuids]);
  return r.weighted<() => string>([
    [3, () => b64url(`${r.pick(dates)}|${uuids()}`)],
    [2, () => (ids.cursors.length ? r.pick(ids.cursors) : b64url(`${r.pick(dates)}|${r.uuid()}`))],
    [1, () => b64url(`${r.pick(dates)}|${uuids()}|${uuids()}`)],
    [1, () => b64(`${r.pick(dates)}|${uuids()}`)],
    [2, () => r.pick(["", "x", "====", "|", "MHw", "%%%", "\u0000"])],
    [1, () => hostileString(r)],
  ])();
}
