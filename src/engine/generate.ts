/**
 * One generation: prompt -> text encoder -> decoder steps with guidance and per-image sampling ->
 * VQ decodes (previews along the way, final images at the end), as a stream of events. It is a
 * batch of one: the same code serves continuous batching (batch.ts), so results cannot differ.
 */
import { DecodeBatch } from "./batch.ts";
import type { Model } from "./model.ts";
import type { GenerateRequest, GenerationEvent } from "./request.ts";

export * from "./request.ts";
export { decodeGrids } from "./vq.ts";

export async function* generate(model: Model, request: GenerateRequest): AsyncGenerator<GenerationEvent> {
  const batch = new DecodeBatch(model);
  const member = batch.admit(request);
  for (;;) {
    yield* member.drain();
    if (member.error) throw member.error;
    if (member.done) return;
    await batch.step();
  }
}
