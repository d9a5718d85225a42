/**
 * dalle-mini's prompt normalization: `TextNormalizer.__call__` from borisdayma/dalle-mini
 * (src/dalle_mini/model/text.py), step for step in the same order, with the same regular
 * expressions and constants. A model trained on dalle-mini's data saw every caption through it, so
 * its prompts must go through it too. Each step is tagged with the Python function it ports.
 * Compared with that file run under ftfy 6.1.1, emoji 2.2.0 and unidecode 1.3.6, the outputs agree
 * except for the differences below.
 *
 * Where this differs from the Python, and why (it must run offline, with no Python libraries):
 * - ftfy.fix_text has no JavaScript port. Done here, in ftfy 6.1's order and repeated until nothing
 *   changes: HTML entities (line by line, stopping from the first line that holds "<", as its
 *   "auto" mode does, all-caps spellings included), C1 controls read as Windows-1252, Latin
 *   ligatures, full-width forms, curly quotes, line breaks, lone surrogates, terminal escapes,
 *   control characters, NFC. Not done: mojibake repair (fix_encoding), which needs ftfy's badness
 *   heuristic and codec tables, so "cafÃ©" gives " cafa, copyright" where Python gives " cafe".
 * - emoji.demojize: the names come from the unicode-emoji-json package (Unicode's emoji-test data),
 *   shaped as the emoji package shapes them (country and region flags lose "flag", commas and curly
 *   quotes are dropped, spaces become "_"), a skin tone appended as "_<tone>_skin_tone". 94% of
 *   emoji 2.2.0's 4,733 sequences get its exact name; the rest are renames ("Türkiye"), tone words
 *   in another place ("man_bald_dark_skin_tone" for "man_dark_skin_tone_bald") and multi-person
 *   sequences with two skin tones, which come out as their parts. Matching takes the longest
 *   sequence that has a name, where emoji 2.2.0 gives up on a prefix that leads nowhere (it drops
 *   the woman from "👩" + ZWJ + "x"). Emoji newer than emoji 2.2.0 are named here; Python drops them.
 * - unidecode: the npm `unidecode` port of the same Text::Unidecode tables, applied per character
 *   with its "[?]" placeholder and Perl backslash escapes removed and six Latin-1 and Cyrillic
 *   entries corrected. About 2% of the BMP still differs from Python's unidecode 1.3.6 (rare
 *   symbols and scripts, 1% of CJK ideographs, mostly a space against nothing); beyond U+FFFF the
 *   port has no tables, so mathematical letters and the like become "" where Python spells them.
 * - HashtagProcessor splits "#sunsetbeach" into words with an English word-frequency list that it
 *   downloads from the Hugging Face hub. Without it the hashtag is only cut where that splitter
 *   cuts, at "_" ("#sunset_beach" -> "sunset beach"); "#sunsetbeach" stays one word. Splitting
 *   camelCase cannot stand in for the list: the text is lower-cased before this step.
 * - "<person>" becomes "a person", "someone" or "somebody" with Python's weights and its
 *   random.choices arithmetic, drawing from `options.random` (default Math.random) instead of
 *   Python's `random` module: the same draws give the same words, but the streams differ.
 * - Python's \w, \d, \s and \b are Unicode-aware, JavaScript's (without the u flag) ASCII-only.
 *   Every step that uses them runs after transliteration, on ASCII text, where the two agree except
 *   for U+001C..U+001F (space to Python), which the control-character steps have already removed.
 */
import { createRequire } from "node:module";
import { decodeHTML, decodeHTMLStrict } from "entities";

export interface DalleMiniOptions {
  /** Uniform draws in [0, 1) for the "<person>" replacements (Python: its `random` module). */
  random?: () => number;
}

const require = createRequire(import.meta.url);
// CommonJS without type declarations.
const unidecode = require("unidecode") as (text: string) => string;

/** Marks characters that the punctuation steps must not turn into commas (Python: temp_token). */
const TEMP = "xtokx";
/** Person words and their counts in Wikipedia, as dalle-mini weighs them. */
const PERSON_TOKENS: readonly (readonly [string, number])[] = [["a person", 282265], ["someone", 121194], ["somebody", 12219]];

export function normalizeDalleMini(text: string, options: DalleMiniOptions = {}): string {
  let t = fixText(text);
  t = htmlUnescape(htmlUnescape(t)); // fix_html
  t = demojize(t);
  t = transliterate(t);
  t = t.toLowerCase();
  t = replacePersonToken(t, options.random ?? Math.random);
  t = t.replace(/^\s*\[\d+\]/, "").replace(/\[\d+\]\s*$/, ""); // remove_wiki_ref
  t = t.replace(/<[^<]+?>/g, " "); // remove_html_tags
  t = t.replace(/http\S+/g, ""); // remove_urls
  // remove_comma_numbers: twice, because matches cannot overlap ("1,000,000")
  t = t.replace(/(\d),(\d{3})/g, "$1$2").replace(/(\d),(\d{3})/g, "$1$2");
  t = t.replace(/(\w)\.(\w)/g, `$1${TEMP}dot${TEMP}$2`); // pre_process_dot_numbers
  t = t.replace(/'(?=([stdm]|(ll)|(re)|(ve)|(ll))\b)/g, `${TEMP}quote${TEMP}`); // pre_process_quotes
  t = t.replace(/(\d)\/(\d)/g, `$1${TEMP}slash${TEMP}$2`); // pre_process_dates
  t = t.replace(/(\w)-(\w)/g, "$1 $2").replace(/([%&/$*])/g, " $1 "); // handle_special_chars
  t = t.replace(/#(\w+)/g, (_match, tag: string) => splitHashtag(tag)); // expand_hashtags
  t = t.replace(/[_#\\]/g, " "); // ignore_chars
  t = t.replace(/['"`]/g, ' " '); // simplify_quotes
  t = t.replace(/[()[\].,|:;?!=+~\-/{}]/g, ","); // replace_punctuation_with_commas
  t = t.replaceAll(`${TEMP}dot${TEMP}`, ".").replaceAll(`${TEMP}quote${TEMP}`, "'").replaceAll(`${TEMP}slash${TEMP}`, "/");
  t = t.replace(/(\D)\1{3,}/g, "$1"); // remove_repeating_chars
  t = t.replace(/(\s*"+\s*)+/g, ' " '); // merge_quotes
  t = t.replace(/(\s*,+\s*)+/g, ", "); // merge_commas
  t = t.replace(/\s+/g, " "); // remove_extra_spaces
  t = removeFirstLastCommas(t);
  return ` ${t}`;
}

function replacePersonToken(t: string, random: () => number): string {
  t = t.replace(/<person>([,\s]*(and)*[,\s]*<person>)+/g, " people ");
  return t.replace(/<person>/g, () => ` ${choosePerson(random())} `);
}

/** random.choices(names, weights): bisect_right over the running totals, capped at the last index. */
function choosePerson(draw: number): string {
  const x = draw * PERSON_TOKENS.reduce((sum, [, count]) => sum + count, 0);
  let runningTotal = 0;
  for (const [name, count] of PERSON_TOKENS.slice(0, -1)) {
    runningTotal += count;
    if (x < runningTotal) return name;
  }
  return PERSON_TOKENS[PERSON_TOKENS.length - 1]![0];
}

/** HashtagProcessor without its word list: cut where its splitter cuts, each part kept whole. */
function splitHashtag(tag: string): string {
  // Unlike the space that ignore_chars would put there, an "_" at either end just goes ("#_x" -> "x").
  return tag.split(/[^a-zA-Z0-9']+/).filter((part) => part !== "").join(" ");
}

function removeFirstLastCommas(t: string): string {
  t = t.trim();
  if (t.endsWith(",")) t = t.slice(0, -1);
  if (t.startsWith(",")) t = t.slice(1);
  return t.trim();
}

// ---- ftfy.fix_text (the part that needs no heuristics) ----

/** Bytes 0x80..0x9F in Windows-1252; the five it leaves undefined stay themselves (ftfy, html). */
const WINDOWS_1252_C1 =
  "\u20ac\x81\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\x8d\u017d\x8f\x90\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\x9d\u017e\u0178";
const LIGATURES: Readonly<Record<string, string>> = {
  "\u0132": "IJ", "\u0133": "ij", "\u0149": "\u02bcn", "\u01f1": "DZ", "\u01f2": "Dz", "\u01f3": "dz",
  "\u01c4": "D\u017d", "\u01c5": "D\u017e", "\u01c6": "d\u017e", "\u01c7": "LJ", "\u01c8": "Lj", "\u01c9": "lj",
  "\u01ca": "NJ", "\u01cb": "Nj", "\u01cc": "nj", "\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl",
  "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "\u017ft", "\ufb06": "st",
};

function fixText(text: string): string {
  let unescape = true;
  let out = "";
  for (const line of text.match(/[^\n]*\n|[^\n]+/g) ?? []) {
    // "auto": a line with "<" may be real HTML, so from there on entities are left alone
    if (line.includes("<")) unescape = false;
    let s = line;
    let before: string;
    do {
      before = s;
      if (unescape) s = s.replace(/&#?[0-9A-Za-z]{1,24};/g, ftfyEntity);
      s = s
        .replace(/[\x80-\x9f]/g, (c) => WINDOWS_1252_C1.charAt(c.charCodeAt(0) - 0x80))
        .replace(/[\u0132\u0133\u0149\u01c4-\u01cc\u01f1-\u01f3\ufb00-\ufb06]/g, (c) => LIGATURES[c] ?? c)
        .replace(/[\u3000\uff01-\uffef]/g, (c) => (c === "\u3000" ? " " : c.normalize("NFKC")))
        .replace(/[\u201c-\u201f]/g, '"')
        .replace(/[\u02bc\u2018-\u201b]/g, "'")
        .replace(/\r\n|[\r\u2028\u2029\x85]/g, "\n")
        .replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, "\ufffd")
        .replace(/\x1b\[((?:\d|;)*)([a-zA-Z])/g, "")
        .replace(/[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g, "")
        .normalize("NFC");
    } while (s !== before);
    out += s;
  }
  return out;
}

/** ftfy's unescape_html: only ";"-terminated references, and all-caps names of lower-case ones. */
function ftfyEntity(ref: string): string {
  if (ref.startsWith("&#")) {
    const char = htmlUnescape(ref);
    return char.includes(";") ? ref : char;
  }
  const decoded = decodeHTMLStrict(ref);
  if (decoded !== ref) return decoded;
  const lower = ref.toLowerCase();
  if (ref === lower.toUpperCase() && htmlUnescape(ref) === ref) {
    const lowerDecoded = decodeHTMLStrict(lower);
    if (lowerDecoded !== lower) return lowerDecoded.toUpperCase();
  }
  return ref;
}

/**
 * Python's html.unescape. `entities` decodes named references by the same HTML5 rules; numeric
 * ones are done here because Python drops references to control characters and non-characters.
 */
function htmlUnescape(s: string): string {
  if (!s.includes("&")) return s;
  // Named references cannot contain "&" or "#", so splitting at numeric ones keeps them whole.
  return s
    .split(/(&#(?:[0-9]+|[xX][0-9a-fA-F]+);?)/)
    .map((part, i) => (i % 2 === 1 ? numericReference(part) : decodeHTML(part)))
    .join("");
}

function numericReference(ref: string): string {
  const hex = ref[2] === "x" || ref[2] === "X";
  const n = Number.parseInt(ref.slice(hex ? 3 : 2), hex ? 16 : 10);
  if (n === 0) return "\ufffd";
  if (n === 0x0d) return "\r";
  if (n >= 0x80 && n <= 0x9f) return WINDOWS_1252_C1.charAt(n - 0x80);
  if ((n >= 0xd800 && n <= 0xdfff) || n > 0x10ffff) return "\ufffd";
  const invalid = (n >= 0x01 && n <= 0x08) || n === 0x0b || (n >= 0x0e && n <= 0x1f) || n === 0x7f || (n >= 0xfdd0 && n <= 0xfdef) || (n & 0xfffe) === 0xfffe;
  return invalid ? "" : String.fromCodePoint(n);
}

// ---- emoji.demojize ----

interface EmojiNode {
  next: Map<number, EmojiNode>;
  name?: string;
  /** Takes a skin-tone modifier right after it. */
  toneable?: boolean;
}

const SKIN_TONES: ReadonlyMap<number, string> = new Map([
  [0x1f3fb, "light_skin_tone"],
  [0x1f3fc, "medium-light_skin_tone"],
  [0x1f3fd, "medium_skin_tone"],
  [0x1f3fe, "medium-dark_skin_tone"],
  [0x1f3ff, "dark_skin_tone"],
]);

let emojiTrie: EmojiNode | undefined;

function loadEmojiTrie(): EmojiNode {
  const byEmoji = require("unicode-emoji-json/data-by-emoji.json") as Record<string, { name: string; skin_tone_support: boolean }>;
  const components = require("unicode-emoji-json/data-emoji-components.json") as Record<string, string>;
  const root: EmojiNode = { next: new Map() };
  const add = (emoji: string, name: string, toneable: boolean): void => {
    let node = root;
    // Variation selectors are stripped from the text before matching, so from the keys too.
    for (const ch of emoji.replace(/[\ufe0e\ufe0f]/g, "")) {
      const cp = ch.codePointAt(0)!;
      let next = node.next.get(cp);
      if (next === undefined) node.next.set(cp, (next = { next: new Map() }));
      node = next;
    }
    node.name ??= name;
    node.toneable ||= toneable;
  };
  for (const [name, emoji] of Object.entries(components)) add(emoji, SKIN_TONES.get(emoji.codePointAt(0)!) ?? name, false);
  for (const [emoji, data] of Object.entries(byEmoji)) add(emoji, emojiName(emoji, data.name), data.skin_tone_support);
  return root;
}

/** The emoji package's spelling of a Unicode emoji name. */
function emojiName(emoji: string, unicodeName: string): string {
  const cps = [...emoji].map((ch) => ch.codePointAt(0)!);
  const isRegionFlag = cps.some((cp) => (cp >= 0x1f1e6 && cp <= 0x1f1ff) || (cp >= 0xe0020 && cp <= 0xe007f));
  const name = isRegionFlag && unicodeName.startsWith("flag ") ? unicodeName.slice(5) : unicodeName;
  return name.replace(/[,\u201c\u201d]/g, "").replaceAll(" ", "_");
}

function demojize(text: string): string {
  // Every emoji has a non-ASCII code point; most prompts need no table at all.
  if (!/[^\x00-\x7f]/.test(text)) return text;
  // demojize drops variation selectors it does not consume; unidecode would drop the rest anyway.
  const s = text.replace(/[\ufe0e\ufe0f]/g, "");
  const root = (emojiTrie ??= loadEmojiTrie());
  let out = "";
  let i = 0;
  while (i < s.length) {
    const hit = matchEmoji(root, s, i);
    if (hit !== undefined) {
      out += `:${hit.name}:`;
      i = hit.end;
    } else {
      const ch = String.fromCodePoint(s.codePointAt(i)!);
      out += ch;
      i += ch.length;
    }
  }
  return out;
}

/** The longest emoji at `start`, a skin tone after a toneable code point taken into its name. */
function matchEmoji(root: EmojiNode, s: string, start: number): { name: string; end: number } | undefined {
  let node = root;
  let i = start;
  let toned = false;
  const tones: string[] = [];
  let best: { name: string; end: number } | undefined;
  while (i < s.length) {
    const cp = s.codePointAt(i)!;
    const width = cp > 0xffff ? 2 : 1;
    const tone = SKIN_TONES.get(cp);
    if (tone !== undefined && node.toneable && !toned) {
      if (!tones.includes(tone)) tones.push(tone);
      toned = true;
      i += width;
      best = { name: [node.name, ...tones].join("_"), end: i };
      continue;
    }
    const next = node.next.get(cp);
    if (next === undefined) break;
    node = next;
    toned = false;
    i += width;
    if (node.name !== undefined) best = { name: [node.name, ...tones].join("_"), end: i };
  }
  return best;
}

// ---- unidecode ----

/** Where the npm port's tables differ from Python's unidecode in Latin-1 and Cyrillic. */
const UNIDECODE_UPDATES: Readonly<Record<string, string>> = {
  "\u00bc": " 1/4", "\u00bd": " 1/2", "\u00be": " 3/4", "\u0404": "Ie", "\u042a": "'", "\u044a": "'",
};

function transliterate(t: string): string {
  return t.replace(/[^\x00-\x7f]/gu, (ch) => {
    const update = UNIDECODE_UPDATES[ch];
    if (update !== undefined) return update;
    // One character at a time: the port's UTF-8 guard skips some Latin-1 pairs ("Ã©") otherwise.
    const ascii = unidecode(ch).replaceAll("[?]", "").replace(/\\(.)/g, "$1");
    // Its tables pass U+2028 and U+2029 through; Python's give line breaks.
    return /[^\x00-\x7f]/.test(ascii) ? "\n" : ascii;
  });
}
