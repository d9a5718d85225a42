/** The whole GraphQL schema: every type file registers itself on the builder. */
import { builder } from "./builder.ts";
import "./types/image.ts";
import "./types/generation.ts";
import "./types/mutations.ts";
import "./types/generations.ts";
import "./types/model.ts";
import "./types/prompt-check.ts";
import "./types/health.ts";
import "./types/events.ts";

export const schema = builder.toSchema({ sortSchema: false });
