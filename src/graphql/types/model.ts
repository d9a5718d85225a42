import type { ModelInfo } from "../../engine/model.ts";
import { sequenceLength } from "../../engine/model-format.ts";
import { defaultPreviewInterval } from "../../engine/request.ts";
import { liveWorkers } from "../../jobs/queue.ts";
import { builder } from "../builder.ts";

export const ModelRef = builder.objectRef<ModelInfo>("Model").implement({
  description: "A text-to-image model this server runs.",
  fields: (t) => ({
    name: t.string({ description: "Its name (what createGeneration's `model` takes).", resolve: (m) => m.manifest.name }),
    version: t.string({ description: "Its version.", resolve: (m) => m.manifest.version }),
    description: t.string({ description: "What it was trained on and what it can draw.", resolve: (m) => m.manifest.description }),
    imageWidth: t.int({ description: "Width of its images in pixels.", resolve: (m) => m.manifest.architecture.imageSize.width }),
    imageHeight: t.int({ description: "Height of its images in pixels.", resolve: (m) => m.manifest.architecture.imageSize.height }),
    tokensPerImage: t.int({ description: "Tokens the decoder writes per image: the token grid's size, plus the scene plan's where the model writes one.", resolve: (m) => sequenceLength(m.manifest.architecture) }),
    defaultPreviewInterval: t.int({ description: "Codes between VQ previews when a generation names no previewInterval: one row of the image's token grid.", resolve: (m) => defaultPreviewInterval(m.manifest.architecture) }),
    maxTextTokens: t.int({ description: "Prompt tokens it reads; longer prompts are truncated.", resolve: (m) => m.manifest.architecture.maxTextLength }),
    defaultGuidanceScale: t.float({ description: "Default guidance scale.", resolve: (m) => m.manifest.sampling.guidanceScale }),
    defaultTopK: t.int({ description: "Default top-k.", resolve: (m) => m.manifest.sampling.topK }),
    defaultTopP: t.float({ description: "Default top-p.", resolve: (m) => m.manifest.sampling.topP }),
    defaultTemperature: t.float({ description: "Default temperature.", resolve: (m) => m.manifest.sampling.temperature }),
    workers: t.int({
      description: "Worker processes serving this model now (heartbeat within the lease). With 0, its generations wait in the queue.",
      resolve: (m, _, ctx) => liveWorkers(ctx.prisma, m.manifest.name, ctx.queue),
    }),
  }),
});

builder.queryField("models", (t) =>
  t.field({ type: [ModelRef], description: "The models this server runs.", resolve: (_, __, ctx) => [ctx.model] }),
);
