import { IMAGE_FORMATS, validateSize, type ImageFormat, type Upscale } from "../../images/encode.ts";
import { visibleTo } from "../../auth/viewer.ts";
import { signedPath } from "../../http/pictures.ts";
import { builder } from "../builder.ts";
import { codedError, toGraphQLError } from "../errors.ts";
import type { ImageRow, PreviewRow } from "../loaders.ts";
import { encodedPicture } from "../../images/cache.ts";

export const ImageFormatEnum = builder.enumType("ImageFormat", {
  description: "Encodings an image can be fetched in.",
  values: Object.fromEntries(IMAGE_FORMATS.map((f) => [f.toUpperCase(), { value: f, description: `${f.toUpperCase()} image` }])) as Record<string, { value: ImageFormat }>,
});

export const UpscaleEnum = builder.enumType("Upscale", {
  description: "How an image is enlarged for display.",
  values: {
    NEAREST: { value: "nearest" as Upscale, description: "Blocky: every model pixel stays a crisp square." },
    SMOOTH: { value: "smooth" as Upscale, description: "Interpolated (Lanczos)." },
  },
});

type Picture = ImageRow | PreviewRow;

function isPreview(p: Picture): p is PreviewRow {
  return "tokensDone" in p;
}

function checkSize(size: number | null | undefined): number | undefined {
  if (size == null) return undefined;
  try {
    return validateSize(size);
  } catch (e) {
    throw toGraphQLError(e);
  }
}

/** How a picture is asked for: encoding, width and enlargement. */
const pictureArgs = builder.args((t) => ({
  format: t.field({ type: ImageFormatEnum, required: true, defaultValue: "png", description: "Encoding." }),
  size: t.int({ description: "Width in pixels (1-1024); default: as generated." }),
  upscale: t.field({ type: UpscaleEnum, required: true, defaultValue: "nearest", description: "How to enlarge." }),
}));

export const PictureRef = builder.interfaceRef<Picture>("Picture").implement({
  description: "Something that can be shown: a final image or a preview.",
  fields: (t) => ({
    width: t.exposeInt("width", { description: "Width in pixels as generated." }),
    height: t.exposeInt("height", { description: "Height in pixels as generated." }),
    url: t.string({
      description: "An HTTP URL serving the image with its content type, an ETag and cache headers (a year when public; until the link expires when signed).",
      args: pictureArgs,
      resolve: (p, args, ctx) => {
        const size = checkSize(args.size);
        const kind = isPreview(p) ? "previews" : "images";
        // Always signed: the link works whatever the generation's visibility becomes, in an <img> tag too.
        const q = new URLSearchParams(ctx.access.signer.sign(signedPath(kind, p.id)));
        if (size !== undefined) q.set("size", String(size));
        if (args.upscale !== "nearest") q.set("upscale", args.upscale);
        return `${ctx.origin}/${kind}/${p.id}.${args.format}?${q}`;
      },
    }),
    dataUrl: t.string({
      description: "The image inline, as a data: URL.",
      args: pictureArgs,
      resolve: async (p, args, ctx) => {
        const kind = isPreview(p) ? "previews" : "images";
        const width = checkSize(args.size);
        const bytes = await encodedPicture(kind, p.id, p.width, { format: args.format, width, upscale: args.upscale }, () => ctx.loaders.bytes.load(`${kind}:${p.id}`));
        if (!bytes) throw codedError("NOT_FOUND", `the ${kind === "images" ? "image" : "preview"} is gone`);
        return `data:image/${args.format};base64,${bytes.toString("base64")}`;
      },
    }),
  }),
});

export function isUuid(s: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s);
}

export const ImageRef = builder.node(builder.objectRef<ImageRow>("Image"), {
  description: "A final image of a generation.",
  interfaces: [PictureRef],
  isTypeOf: (v) => typeof v === "object" && v !== null && "seed" in v && "format" in v,
  id: { resolve: (img) => img.id },
  loadMany: (ids, ctx) => ctx.prisma.image.findMany({ where: { id: { in: ids.filter(isUuid) }, generation: visibleTo(ctx.viewer) }, omit: { bytes: true } }).then((rows) => ids.map((id) => rows.find((r) => r.id === id) ?? null)),
  fields: (t) => ({
    index: t.exposeInt("index", { description: "0-based position among the generation's images." }),
    seed: t.exposeInt("seed", { description: "This image's own seed: generating it alone with this seed gives the same image." }),
  }),
});

export const PreviewRef = builder.objectRef<PreviewRow>("Preview").implement({
  description: "A partial decode of one image while its tokens are generated; positions not generated yet show the most frequent code so far.",
  interfaces: [PictureRef],
  isTypeOf: (v) => typeof v === "object" && v !== null && "tokensDone" in v,
  fields: (t) => ({
    tokensDone: t.exposeInt("tokensDone", { description: "How many of the image's tokens this preview shows." }),
    index: t.exposeInt("index", { description: "Which image of the generation (0-based)." }),
  }),
});
