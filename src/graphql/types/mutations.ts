/** createGeneration, cancelGeneration and deleteGeneration: who may, and what is checked first. */
import { encodeGlobalID } from "@pothos/plugin-relay";
import { canChange } from "../../auth/viewer.ts";
import { badInput } from "../../engine/errors.ts";
import { resolveRequest } from "../../engine/generate.ts";
import { sequenceLength } from "../../engine/model-format.ts";
import { admit } from "../../jobs/admission.ts";
import { publish } from "../../jobs/events.ts";
import { requestCancel } from "../../jobs/queue.ts";
import { builder } from "../builder.ts";
import type { Context } from "../context.ts";
import { codedError, notFound, toGraphQLError } from "../errors.ts";
import { findVisible, GenerationRef, VisibilityEnum } from "./generation.ts";

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
    visibility: t.field({ type: VisibilityEnum, description: "Who can see it: default PRIVATE with an API key, PUBLIC without one (PRIVATE needs a key)." }),
  }),
});

const undef = <T>(v: T | null | undefined): T | undefined => (v === null ? undefined : v);

builder.mutationField("createGeneration", (t) =>
  t.field({
    type: GenerationRef,
    description: "Queues a generation and returns it at once (status QUEUED). Follow it with the generationEvents subscription. Over a quota: RATE_LIMITED or QUEUE_FULL with `retryAfterSeconds`.",
    args: { input: t.arg({ type: CreateInput, required: true, description: "The prompt and its settings." }) },
    resolve: async (_, { input }, ctx) => {
      const m = ctx.model.manifest;
      const { key, address } = ctx.viewer;
      try {
        if (input.model != null && input.model !== m.name) throw badInput(`unknown model "${input.model}" (this server has "${m.name}")`);
        const visibility = input.visibility ?? (key ? "PRIVATE" : "PUBLIC");
        if (visibility === "PRIVATE" && !key) throw badInput("a PRIVATE generation needs an API key (Authorization: Bearer <key>) to own it");
        const r = resolveRequest(ctx.model, {
          prompt: input.prompt, count: undef(input.count), seed: undef(input.seed), previewInterval: undef(input.previewInterval),
          sampling: { guidanceScale: undef(input.guidanceScale), topK: undef(input.topK), topP: undef(input.topP), temperature: undef(input.temperature) },
        });
        const row = await admit(ctx.prisma, {
          prompt: r.prompt, normalizedPrompt: ctx.model.prompts.encode(r.prompt).normalized, model: m.name, count: r.count, seed: r.seed,
          ...r.settings, previewInterval: r.previewInterval, tokensTotal: sequenceLength(m.architecture),
        }, { keyId: key?.id ?? null, admin: !!key?.admin, address }, visibility, ctx.access.quotas);
        ctx.log(`mosaic: generation ${row.id} created`, { event: "created", generationId: row.id, model: row.model, images: row.count, key: key?.name });
        return row;
      } catch (e) {
        throw toGraphQLError(e);
      }
    },
  }),
);

/** The generation if the viewer may change it: NOT_FOUND when they cannot see it, FORBIDDEN when they can only look. */
async function changeable(ctx: Context, id: string) {
  const row = await findVisible(ctx, id);
  if (!row) throw notFound("generation", id);
  if (!canChange(ctx.viewer, row, ctx.access.auth)) throw codedError("FORBIDDEN", "only the API key that created this generation, or an admin key, can change it");
  return row;
}

builder.mutationField("cancelGeneration", (t) =>
  t.field({
    type: GenerationRef,
    description: "Cancels a generation: a queued one at once, a running one within one decoder step. Finished generations are returned unchanged. Only its owner or an admin (FORBIDDEN otherwise).",
    args: { id: t.arg.globalID({ required: true, for: [GenerationRef], description: "The generation's id." }) },
    resolve: async (_, { id }, ctx) => {
      await changeable(ctx, id.id);
      const row = await requestCancel(ctx.prisma, id.id);
      if (!row) throw notFound("generation", id.id);
      return row;
    },
  }),
);

/** How long deleteGeneration waits for a running generation's worker to stop after cancelling it. */
const STOP_WAIT_MS = 15_000;

builder.mutationField("deleteGeneration", (t) =>
  t.id({
    description: "Deletes a generation with its images and previews, and returns its id. A queued or running one is cancelled first (the worker stops within one decoder step). Only its owner or an admin (FORBIDDEN otherwise).",
    args: { id: t.arg.globalID({ required: true, for: [GenerationRef], description: "The generation's id." }) },
    resolve: async (_, { id }, ctx) => {
      let row = await changeable(ctx, id.id);
      if (row.status === "QUEUED" || row.status === "RUNNING") {
        await requestCancel(ctx.prisma, row.id);
        const end = Date.now() + STOP_WAIT_MS;
        while (row.status === "RUNNING" && Date.now() < end) {
          await new Promise((r) => setTimeout(r, 100));
          row = (await ctx.prisma.generation.findUnique({ where: { id: row.id } })) ?? row;
        }
        if (row.status === "RUNNING") throw codedError("UNAVAILABLE", "the generation was cancelled but its worker has not stopped yet; retry shortly");
      }
      await ctx.prisma.generation.deleteMany({ where: { id: row.id } });
      await publish(ctx.prisma, { kind: "generation", id: row.id });
      ctx.log(`mosaic: generation ${row.id} deleted`, { event: "deleted", generationId: row.id, key: ctx.viewer.key?.name });
      return encodeGlobalID("Generation", row.id);
    },
  }),
);
