/**
 * Prompt text -> token ids, as the model folder declares: a normalization by name, then the
 * tokenizer file (a Hugging Face tokenizer.json read by @huggingface/tokenizers).
 */
import { readFile } from "node:fs/promises";
import { Tokenizer } from "@huggingface/tokenizers";
import { MosaicError } from "./errors.ts";
import { normalizeDalleMini } from "./normalize-dalle-mini.ts";
import { Mulberry32 } from "./random.ts";

export type NormalizationName = "mosaic-basic" | "dalle-mini" | "none";
export const NORMALIZATIONS: readonly NormalizationName[] = ["mosaic-basic", "dalle-mini", "none"];

/**
 * "mosaic-basic" (the shipped model's): accents stripped, lower case, every run of characters that
 * is not a letter, digit or space becomes one comma token, white space collapsed, commas at the
 * ends dropped. Must equal training/mosaic_train/text.py `normalise`.
 */
export function normalizeBasic(text: string): string {
  const ascii = text.normalize("NFKD").replace(/\p{M}/gu, "").toLowerCase();
  const spaced = ascii.replace(/[^a-z0-9\s]+/g, " , ");
  const out: string[] = [];
  for (const w of spaced.split(/\s+/)) {
    if (w === "") continue;
    if (w === "," && (out.length === 0 || out[out.length - 1] === ",")) continue;
    out.push(w);
  }
  while (out[out.length - 1] === ",") out.pop();
  return out.join(" ");
}

/**
 * dalle-mini replaces "<person>" with randomly chosen words. Drawing from a stream seeded by the
 * prompt itself keeps a generation reproducible from its prompt and seed.
 */
function promptRandom(text: string): () => number {
  let h = 0x811c9dc5; // FNV-1a
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  const rng = new Mulberry32(h >>> 0);
  return () => rng.uniform();
}

export function normalize(text: string, name: NormalizationName): string {
  if (name === "mosaic-basic") return normalizeBasic(text);
  if (name === "dalle-mini") return normalizeDalleMini(text, { random: promptRandom(text) });
  return text;
}

export interface EncodedPrompt {
  /** The text the tokenizer saw. */
  normalized: string;
  /** Padded to the model's max text length. */
  ids: number[];
  mask: number[];
  /** Tokens dropped from the end because the prompt was longer than the model reads. */
  truncatedTokens: number;
  /** Words the tokenizer does not know (encoded as its unknown token). */
  unknownWords: string[];
  /** Words cut off by the model's text length (the model never reads them). */
  truncatedWords: string[];
}

interface TokenizerJson {
  model?: { unk_token?: string; vocab?: unknown };
  added_tokens?: { id: number; content: string }[];
}

export class PromptEncoder {
  private constructor(
    private readonly tokenizer: Tokenizer,
    private readonly normalization: NormalizationName,
    private readonly maxLength: number,
    private readonly padId: number,
    private readonly unkId: number | undefined,
  ) {}

  static async load(path: string, normalization: NormalizationName, maxLength: number, padId: number): Promise<PromptEncoder> {
    let json: TokenizerJson;
    try {
      json = JSON.parse(await readFile(path, "utf8")) as TokenizerJson;
    } catch (e) {
      throw new MosaicError("MODEL_INVALID", `${path}: cannot read the tokenizer: ${(e as Error).message}`, { cause: e });
    }
    const tokenizer = new Tokenizer(json, {});
    const unkName = json.model?.unk_token;
    const unkId = unkName === undefined ? undefined : tokenizer.token_to_id(unkName);
    return new PromptEncoder(tokenizer, normalization, maxLength, padId, unkId);
  }

  encode(prompt: string): EncodedPrompt {
    return this.encodeText(normalize(prompt, this.normalization));
  }

  /**
   * The unconditional row for guidance: the tokenizer on the empty string, not normalized
   * (dalle-mini's processor does the same; its normalizer would turn "" into " ", a real token).
   */
  encodeUnconditional(): EncodedPrompt {
    return this.encodeText("");
  }

  private encodeText(normalized: string): EncodedPrompt {
    const enc = this.tokenizer.encode(normalized);
    const unknownWords: string[] = [];
    // @huggingface/tokenizers 0.2 reads a WordLevel model but returns undefined for words outside
    // its vocabulary instead of the unknown token; map them here and remember the words.
    // The declared type says number[], but see above: entries can be undefined.
    const raw = enc.ids as (number | undefined)[];
    let ids = raw.map((id, i) => {
      if (id !== undefined) return id;
      unknownWords.push(enc.tokens[i] ?? "");
      if (this.unkId === undefined) throw new MosaicError("MODEL_INVALID", "the tokenizer has no unknown token");
      return this.unkId;
    });
    let truncatedTokens = 0;
    let truncatedWords: string[] = [];
    if (ids.length > this.maxLength) {
      // The tokens between the last kept one and the closing special token (word-level: one word each).
      truncatedWords = enc.tokens.slice(this.maxLength - 1, enc.tokens.length - 1);
      // Keep the closing special token: the model was trained with one at the end of every prompt.
      truncatedTokens = ids.length - this.maxLength;
      ids = [...ids.slice(0, this.maxLength - 1), ids[ids.length - 1]!];
    }
    const mask = ids.map(() => 1);
    while (ids.length < this.maxLength) {
      ids.push(this.padId);
      mask.push(0);
    }
    return { normalized, ids, mask, truncatedTokens, unknownWords, truncatedWords };
  }
}
