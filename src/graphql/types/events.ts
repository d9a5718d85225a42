import { watchGeneration, type WatchEvent } from "../../jobs/watch.ts";
import { builder } from "../builder.ts";
import { notFound } from "../errors.ts";
import { findVisible, GenerationRef, mosaicArgs, mosaicDataUrl } from "./generation.ts";
import { PreviewRef } from "./image.ts";

type Of<T extends WatchEvent["type"]> = Extract<WatchEvent, { type: T }>;

const generationField = { description: "The generation as of this event." };

const Queued = builder.objectRef<Of<"Queued">>("Queued").implement({
  description: "Waiting for a worker.",
  isTypeOf: (e) => (e as WatchEvent).type === "Queued",
  fields: (t) => ({
    position: t.exposeInt("position", { description: "1-based place in the queue." }),
    etaSeconds: t.exposeFloat("etaSeconds", { description: "Estimated wait before it starts: the images ahead of it over the images per second recent generations were done at." }),
    generation: t.field({ type: GenerationRef, ...generationField, resolve: (e) => e.generation }),
  }),
});

const Started = builder.objectRef<Of<"Started">>("Started").implement({
  description: "A worker started generating.",
  isTypeOf: (e) => (e as WatchEvent).type === "Started",
  fields: (t) => ({ generation: t.field({ type: GenerationRef, ...generationField, resolve: (e) => e.generation }) }),
});

const Progress = builder.objectRef<Of<"Progress">>("Progress").implement({
  description: "Tokens were generated. Carries the newest VQ previews when new ones exist.",
  isTypeOf: (e) => (e as WatchEvent).type === "Progress",
  fields: (t) => ({
    tokensDone: t.exposeInt("tokensDone", { description: "Tokens generated so far, per image." }),
    tokensTotal: t.exposeInt("tokensTotal", { description: "Tokens per image." }),
    previews: t.field({ type: [PreviewRef], description: "New partial decodes, one per image (empty when none is new).", resolve: (e) => e.previews }),
    mosaic: t.string({
      nullable: true,
      description: "The zero-cost per-token preview of one image at this point, as a data: URL.",
      args: mosaicArgs,
      resolve: (e, args, ctx) => mosaicDataUrl(e.generation, ctx, args.index, args.format, args.size),
    }),
    generation: t.field({ type: GenerationRef, ...generationField, resolve: (e) => e.generation }),
  }),
});

const Completed = builder.objectRef<Of<"Completed">>("Completed").implement({
  description: "The images are ready (in `generation.images`). The stream ends here.",
  isTypeOf: (e) => (e as WatchEvent).type === "Completed",
  fields: (t) => ({ generation: t.field({ type: GenerationRef, ...generationField, resolve: (e) => e.generation }) }),
});

const Failed = builder.objectRef<Of<"Failed">>("Failed").implement({
  description: "It stopped with an error. The stream ends here.",
  isTypeOf: (e) => (e as WatchEvent).type === "Failed",
  fields: (t) => ({
    code: t.exposeString("code", { description: "Machine-readable error code." }),
    message: t.exposeString("message", { description: "What went wrong." }),
    generation: t.field({ type: GenerationRef, ...generationField, resolve: (e) => e.generation }),
  }),
});

const Cancelled = builder.objectRef<Of<"Cancelled">>("Cancelled").implement({
  description: "It was cancelled. The stream ends here.",
  isTypeOf: (e) => (e as WatchEvent).type === "Cancelled",
  fields: (t) => ({ generation: t.field({ type: GenerationRef, ...generationField, resolve: (e) => e.generation }) }),
});

const GenerationEvent = builder.unionType("GenerationEvent", {
  description: "One step in a generation's life, as streamed by generationEvents.",
  types: [Queued, Started, Progress, Completed, Failed, Cancelled],
  resolveType: (e) => e.type,
});

builder.subscriptionField("generationEvents", (t) =>
  t.field({
    type: GenerationEvent,
    description: "Follows a generation: the current state first (with the latest preview), then Queued / Started / Progress events as they happen, ending after Completed, Failed or Cancelled.",
    args: { id: t.arg.globalID({ required: true, for: [GenerationRef], description: "The generation's id." }) },
    // The watch's own iterator, not a generator around it: its return() must reach the watch at once.
    subscribe: async (_, { id }, ctx) => {
      // Someone else's private generation is not there, as in every other field.
      const events = (await findVisible(ctx, id.id)) ? await watchGeneration(ctx.prisma, ctx.bus, id.id, ctx.signal) : null;
      if (!events) throw notFound("generation", id.id);
      return events;
    },
    resolve: (e) => e,
  }),
);
