import type { Generation } from "../../db/generated/client.ts";
import { badInput } from "../../engine/errors.ts";
import { resolveRequest } from "../../engine/generate.ts";
import { mosaic } from "../../engine/previews.ts";
import { encodeFrame, validateSize } from "../../images/encode.ts";
import { unpackCodes } from "../../jobs/codes.ts";
import { enqueue, queuePosition, requestCancel } from "../../jobs/queue.ts";
import { builder } from "../builder.ts";
import type { Context } from "../context.ts";
import { codedError, notFound, toGraphQLError } from "../errors.ts";
import { ImageFormatEnum, ImageRef, isUuid, PreviewRef } from "./image.ts";

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
  const a = ctx.model.manifest.architecture;
  const grid = unpackCodes(g.codes, g.count)[index]!;
  const frame = { width: a.grid.width * p.patchSize, height: a.grid.height * p.patchSize, data: mosaic(grid, g.tokensDone, patches, { gridHeight: a.grid.height, gridWidth: a.grid.width, patchSize: p.patchSize }, a.codebookSize) };
  let width: number | undefined;
  try {
    width = size == null ? undefined : validateSize(size);
  } catch (e) {
    throw toGraphQLError(e);
  }
  const bytes = await encodeFrame(frame, { format, width });
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
  loadMany: (ids, ctx) => ctx.prisma.generation.findMany({ where: { id: { in: ids.filter(isUuid) } } }).then((rows) => ids.map((id) => rows.find((r) => r.id === id) ?? null)),
  fields: (t) => ({
    prompt: t.exposeString("prompt", { description: "The prompt as typed." }),
    normalizedPrompt: t.exposeString("normalizedPrompt", { description: "The prompt as the model reads it, after the model's text normalization." }),
    model: t.exposeString("model", { description: "The model's name." }),
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
      resolve: (g, _, ctx) => ctx.prisma.image.findMany({ where: { generationId: g.id }, orderBy: { index: "asc" } }),
    }),
    latestPreviews: t.field({
      type: [PreviewRef], description: "The newest VQ preview of each image (empty before the first).",
      resolve: async (g, _, ctx) => {
        const last = await ctx.prisma.preview.findFirst({ where: { generationId: g.id }, orderBy: { tokensDone: "desc" }, select: { tokensDone: true } });
        return last ? ctx.prisma.preview.findMany({ where: { generationId: g.id, tokensDone: last.tokensDone }, orderBy: { index: "asc" } }) : [];
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

const CreateInput = builder.inputType("CreateGenerationInput", {
  description: "A prompt and its sampling settings. Settings left out take the model's defaults.",
  fields: (t) => ({
    prompt: t.string({ required: true, description: "What to draw (up to 2000 characters)." }),
    count: t.int({ description: "How many images, 1-9 (default 1)." }),
    seed: t.int({ description: "0-2147483647; random when absent (always reported). Image i uses seed + i." }),
    guidanceScale: t.float({ description: "Classifier-free guidance scale, 0-100 (1 = off)." }),
    topK: t.int({ description: "Sample among the k most likely tokens (0 = all, 1 = greedy)." }),
    topP: t.float({ description: "Nucleus sampling mass in (0, 1]." }),
    temperature: t.float({ description: "Softmax temperature, 0-100 (0 = greedy)." }),
    previewInterval: t.int({ description: "A VQ preview every this many tokens (0 = none; default one per token row)." }),
    model: t.string({ description: "Model name (default: the server's model)." }),
  }),
});

const undef = <T>(v: T | null | undefined): T | undefined => (v === null ? undefined : v);

builder.mutationField("createGeneration", (t) =>
  t.field({
    type: GenerationRef,
    description: "Queues a generation and returns it at once (status QUEUED). Follow it with the generationEvents subscription.",
    args: { input: t.arg({ type: CreateInput, required: true, description: "The prompt and its settings." }) },
    resolve: async (_, { input }, ctx) => {
      const m = ctx.model.manifest;
      try {
        if (input.model != null && input.model !== m.name) throw badInput(`unknown model "${input.model}" (this server has "${m.name}")`);
        const r = resolveRequest(ctx.model, {
          prompt: input.prompt, count: undef(input.count), seed: undef(input.seed), previewInterval: undef(input.previewInterval),
          sampling: { guidanceScale: undef(input.guidanceScale), topK: undef(input.topK), topP: undef(input.topP), temperature: undef(input.temperature) },
        });
        const row = await enqueue(ctx.prisma, {
          prompt: r.prompt, normalizedPrompt: ctx.model.prompts.encode(r.prompt).normalized, model: m.name, count: r.count, seed: r.seed,
          ...r.settings, previewInterval: r.previewInterval, tokensTotal: m.architecture.grid.height * m.architecture.grid.width,
        });
        ctx.log(`mosaic: generation ${row.id} created`, { event: "created", generationId: row.id, model: row.model, images: row.count });
        return row;
      } catch (e) {
        throw toGraphQLError(e);
      }
    },
  }),
);

builder.mutationField("cancelGeneration", (t) =>
  t.field({
    type: GenerationRef,
    description: "Cancels a generation: a queued one at once, a running one within one decoder step. Finished generations are returned unchanged.",
    args: { id: t.arg.globalID({ required: true, for: [GenerationRef], description: "The generation's id." }) },
    resolve: async (_, { id }, ctx) => {
      const row = isUuid(id.id) ? await requestCancel(ctx.prisma, id.id) : null;
      if (!row) throw notFound("generation", id.id);
      return row;
    },
  }),
);

builder.queryField("generation", (t) =>
  t.field({
    type: GenerationRef, nullable: true, description: "One generation by id (null if there is none).",
    args: { id: t.arg.globalID({ required: true, for: [GenerationRef], description: "The generation's id." }) },
    resolve: (_, { id }, ctx) => (isUuid(id.id) ? ctx.prisma.generation.findUnique({ where: { id: id.id } }) : null),
  }),
);
