/** Raw RGB frames from the engine -> PNG / WebP / JPEG bytes, optionally upscaled for display. */
import sharp from "sharp";
import { badInput } from "../engine/errors.ts";
import type { Frame } from "../engine/generate.ts";

export type ImageFormat = "png" | "webp" | "jpeg";
export const IMAGE_FORMATS: readonly ImageFormat[] = ["png", "webp", "jpeg"];
export type Upscale = "nearest" | "smooth";
/** Widest transcode served (pixels): 4× a 256-pixel DALL·E image; larger is refused, not computed. */
export const MAX_SIZE = 1024;

export interface EncodeOptions {
  format?: ImageFormat;
  /** Output width in pixels, height in proportion; default: the frame's own size. */
  width?: number;
  /** How to enlarge: "nearest" keeps the model's pixels crisp, "smooth" interpolates. */
  upscale?: Upscale;
}

export const CONTENT_TYPES: Record<ImageFormat, string> = { png: "image/png", webp: "image/webp", jpeg: "image/jpeg" };

export function parseFormat(value: string): ImageFormat {
  const v = value.toLowerCase() === "jpg" ? "jpeg" : value.toLowerCase();
  if (!(IMAGE_FORMATS as readonly string[]).includes(v)) throw badInput(`format must be one of ${IMAGE_FORMATS.join(", ")} (got "${value}")`);
  return v as ImageFormat;
}

/** A display size for one image, as users give it. */
export function validateSize(size: number): number {
  if (!Number.isInteger(size) || size < 1 || size > MAX_SIZE) throw badInput(`size must be a whole number from 1 to ${MAX_SIZE} (got ${size})`);
  return size;
}

export async function encodeFrame(frame: Frame, options: EncodeOptions = {}): Promise<Buffer> {
  const format = options.format ?? "png";
  let img = sharp(Buffer.from(frame.data.buffer, frame.data.byteOffset, frame.data.byteLength), {
    raw: { width: frame.width, height: frame.height, channels: 3 },
  });
  if (options.width !== undefined && options.width !== frame.width) {
    const scale = options.width / frame.width;
    img = img.resize({
      width: options.width,
      height: Math.round(frame.height * scale),
      kernel: (options.upscale ?? "nearest") === "nearest" ? "nearest" : "lanczos3",
    });
  }
  if (format === "png") return img.png().toBuffer();
  if (format === "webp") return img.webp({ quality: 90 }).toBuffer();
  return img.jpeg({ quality: 90 }).toBuffer();
}

/** Stored PNG bytes -> the asked format and size (the stored bytes themselves when nothing changes). */
export async function transcode(png: Uint8Array, width: number, options: EncodeOptions = {}): Promise<Buffer> {
  const format = options.format ?? "png";
  const target = options.width ?? width;
  if (format === "png" && target === width) return Buffer.from(png);
  let img = sharp(png);
  if (target !== width) img = img.resize({ width: target, kernel: (options.upscale ?? "nearest") === "nearest" ? "nearest" : "lanczos3" });
  if (format === "png") return img.png().toBuffer();
  if (format === "webp") return img.webp({ quality: 90 }).toBuffer();
  return img.jpeg({ quality: 90 }).toBuffer();
}
