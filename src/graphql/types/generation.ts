import type { Generation } from "../../db/generated/client.ts";
import { visibleTo } from "../../auth/viewer.ts";
import { mosaic } from "../../engine/previews.ts";
import { imageCodes, planLength } from "../../engine/model-format.ts";
import { cachedEncode } from "../../images/cache.ts";
import { encodeFrame, validateSize } from "../../images/encode.ts";
import { unpackCodes } from "../../jobs/codes.ts";
import { queuePosition } from "../../jobs/queue.ts";
import { builder } from "../builder.ts";
import type { Context } from "../context.ts";
import { codedError, toGraphQLError } from "../errors.ts";
import { ImageFormatEnum, ImageRef, isUuid, PreviewRef } from "./image.ts";

export const VisibilityEnum = builder.enumType("Visibility", {
  description: "Who can see a generation.",
  values: {
    PRIVATE: { description: "Its owner (the API key that created it) and admins only." },
    PUBLIC: { description: "Everyone who can use the server." },
  },
});

/** A generation by id if the viewer may see it (someone else's private one reads as not there). */
export async function findVisible(ctx: Context, id: string): Promise<Generation | null> {
  if (!isUuid(id)) return null;
  return ctx.prisma.generation.findFirst({ where: { id, ...visibleTo(ctx.viewer) } });
}

export const StatusEnum = builder.enumType("GenerationStatus", {
  description: "Where a generation is in its life.",
  values: {
    QUEUED: { description: "Waiting for a worker." },
    RUNNING: { description: "A worker is generating its tokens." },
    COMPLETED: { description: "Its images are ready." },
    FAILED: { description: "It stopped with an error (see `error`)." },
    CANCELLED: { description: "It was cancelled." },
  },
});

export const SettingsRef = builder.objectRef<Generation>("SamplingSettings").implement({
  description: "How image tokens were chosen.",
  fields: (t) => ({
    guidanceScale: t.exposeFloat("guidanceScale", { description: "Classifier-free guidance scale (1 = off)." }),
    topK: t.exposeInt("topK", { description: "Sampled among the k most likely tokens (0 = all, 1 = greedy)." }),
    topP: t.exposeFloat("topP", { description: "Nucleus sampling mass (1 = off)." }),
    temperature: t.exposeFloat("temperature", { description: "Softmax temperature (0 = greedy)." }),
  }),
});

export const ErrorRef = builder.objectRef<{ code: string; message: string }>("GenerationError").implement({
  description: "Why a generation failed.",
  fields: (t) => ({
    code: t.exposeString("code", { description: "Machine-readable error code." }),
    message: t.exposeString("message", { description: "What went wrong, for people." }),
  }),
});

/** The per-token mosaic of one image from the stored token grid; null before any token. */
export async function mosaicDataUrl(g: Generation, ctx: Context, index: number, format: "png" | "webp" | "jpeg", size: number | null | undefined): Promise<string | null> {
  const patches = ctx.model.codePatches;
  const p = ctx.model.manifest.previews.codePatches;
  if (!g.codes || !patches || !p || g.tokensDone === 0) return null;
  if (!Number.isInteger(index) || index < 0 || index >= g.count) throw codedError("BAD_INPUT", `index must be from 0 to ${g.count - 1}`);
  let width: number | undefined;
  try {
    width = size == null ? undefined : validateSize(size);
  } catch (e) {
    throw toGraphQLError(e);
  }
  // One encode per (generation, point, image, encoding), however many subscribers ask for it.
  const bytes = await cachedEncode(`mosaic:${g.id}:${g.tokensDone}:${index}:${format}:${width ?? ""}`, () => {
    const a = ctx.model.manifest.architecture;
    // The stored tokens start with the model's plan, if it writes one.
    const grid = imageCodes(a, unpackCodes(g.codes!, g.count)[index]!);
    const done = Math.max(0, g.tokensDone - planLength(a));
    const frame = { width: a.grid.width * p.patchSize, height: a.grid.height * p.patchSize, data: mosaic(grid, done, patches, { gridHeight: a.grid.height, gridWidth: a.grid.width, patchSize: p.patchSize }, a.codebookSize) };
    return encodeFrame(frame, { format, width });
  });
  return `data:image/${format};base64,${bytes.toString("base64")}`;
}

/** Which image's mosaic, and how it is encoded. */
export const mosaicArgs = builder.args((t) => ({
  index: t.int({ required: true, defaultValue: 0, description: "Which image (0-based)." }),
  format: t.field({ type: ImageFormatEnum, required: true, defaultValue: "png", description: "Encoding." }),
  size: t.int({ description: "Width in pixels (1-1024)." }),
}));

export const GenerationRef = builder.node(builder.objectRef<Generation>("Generation"), {
  description: "One prompt's generation of 1-9 images, with its settings, progress and results.",
  isTypeOf: (v) => typeof v === "object" && v !== null && "normalizedPrompt" in v,
  id: { resolve: (g) => g.id },
  loadMany: (ids, ctx) => ctx.prisma.generation.findMany({ where: { id: { in: ids.filter(isUuid) }, ...visibleTo(ctx.viewer) } }).then((rows) => ids.map((id) => rows.find((r) => r.id === id) ?? null)),
  fields: (t) => ({
    prompt: t.exposeString("prompt", { description: "The prompt as typed." }),
    normalizedPrompt: t.exposeString("normalizedPrompt", { description: "The prompt as the model reads it, after the model's text normalization." }),
    model: t.exposeString("model", { description: "The model's name." }),
    visibility: t.field({ type: VisibilityEnum, description: "Who can see it.", resolve: (g) => g.visibility }),
    mine: t.boolean({ description: "Whether the API key of this request created it (false without a key).", resolve: (g, _, ctx) => !!ctx.viewer.key && g.ownerKeyId === ctx.viewer.key.id }),
    count: t.exposeInt("count", { description: "How many images (1-9)." }),
    seed: t.exposeInt("seed", { description: "The generation's seed (chosen at random when none was given); image i uses seed + i." }),
    settings: t.field({ type: SettingsRef, description: "Sampling settings in effect.", resolve: (g) => g }),
    previewInterval: t.exposeInt("previewInterval", { description: "A VQ preview every this many tokens (0 = none)." }),
    status: t.field({ type: StatusEnum, description: "Where it is in its life.", resolve: (g) => g.status }),
    tokensDone: t.exposeInt("tokensDone", { description: "Tokens generated so far, per image." }),
    tokensTotal: t.exposeInt("tokensTotal", { description: "Tokens per image (the token grid's size)." }),
    progress: t.float({ description: "The share of tokens done (tokensDone / tokensTotal), from 0 to 1.", resolve: (g) => g.tokensDone / g.tokensTotal }),
    queuePosition: t.int({ nullable: true, description: "1-based place in the queue while queued; null otherwise.", resolve: (g, _, ctx) => queuePosition(ctx.prisma, g) }),
    createdAt: t.expose("createdAt", { type: "DateTime", description: "When it was submitted." }),
    startedAt: t.expose("startedAt", { type: "DateTime", nullable: true, description: "When a worker started it." }),
    finishedAt: t.expose("finishedAt", { type: "DateTime", nullable: true, description: "When it completed, failed or was cancelled." }),
    error: t.field({
      type: ErrorRef, nullable: true, description: "Why it failed; null unless FAILED.",
      resolve: (g) => (g.status === "FAILED" ? { code: g.errorCode ?? "INFERENCE_FAILED", message: g.errorMessage ?? "generation failed" } : null),
    }),
    images: t.field({
      type: [ImageRef], description: "The final images, in order (empty until COMPLETED).",
      resolve: (g, _, ctx) => ctx.loaders.imagesOf.load(g.id),
    }),
    latestPreviews: t.field({
      type: [PreviewRef], description: "The newest VQ preview of each image (empty before the first).",
      resolve: async (g, _, ctx) => {
        const last = await ctx.prisma.preview.findFirst({ where: { generationId: g.id }, orderBy: { tokensDone: "desc" }, select: { tokensDone: true } });
        return last ? ctx.prisma.preview.findMany({ where: { generationId: g.id, tokensDone: last.tokensDone }, orderBy: { index: "asc" }, omit: { bytes: true } }) : [];
      },
    }),
    mosaic: t.string({
      nullable: true,
      description: "The zero-cost per-token preview of one image as a data: URL: every generated token drawn as its code's colour patch, no decoder run. Null before the first token.",
      args: mosaicArgs,
      resolve: (g, args, ctx) => mosaicDataUrl(g, ctx, args.index, args.format, args.size),
    }),
  }),
});

builder.queryField("generation", (t) =>
  t.field({
    type: GenerationRef, nullable: true, description: "One generation by id (null if there is none).",
    args: { id: t.arg.globalID({ required: true, for: [GenerationRef], description: "The generation's id." }) },
    resolve: (_, { id }, ctx) => findVisible(ctx, id.id),
  }),
);
