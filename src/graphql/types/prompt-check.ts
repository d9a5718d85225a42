/** promptCheck: what the model will read of a prompt, before it is submitted (the page's feedback as you type). */
import type { EncodedPrompt } from "../../engine/text.ts";
import { badInput } from "../../engine/errors.ts";
import { validatePrompt } from "../../engine/request.ts";
import { builder } from "../builder.ts";
import { toGraphQLError } from "../errors.ts";

interface PromptCheck extends EncodedPrompt {
  maxTokens: number;
}

const PromptCheckRef = builder.objectRef<PromptCheck>("PromptCheck").implement({
  description: "What a model reads of a prompt: its normalized words, those it does not know and those cut off by its length.",
  fields: (t) => ({
    normalized: t.exposeString("normalized", { description: "The prompt after the model's text normalization." }),
    unknownWords: t.exposeStringList("unknownWords", { description: "Words outside the model's vocabulary: it reads them as 'unknown' and cannot draw them." }),
    truncatedWords: t.exposeStringList("truncatedWords", { description: "Words past the model's text length, which it never reads." }),
    tokens: t.int({ description: "Text tokens the prompt makes (with the start and end tokens), before truncation.", resolve: (c) => c.mask.filter(Boolean).length + c.truncatedTokens }),
    maxTokens: t.exposeInt("maxTokens", { description: "Text tokens the model reads." }),
    blank: t.boolean({ description: "Whether the prompt has no words at all (the model then draws anything).", resolve: (c) => c.normalized.trim() === "" }),
  }),
});

builder.queryField("promptCheck", (t) =>
  t.field({
    type: PromptCheckRef,
    description: "Checks a prompt against a model's vocabulary and text length without generating anything.",
    args: {
      prompt: t.arg.string({ required: true, description: "The prompt as typed." }),
      model: t.arg.string({ description: "Model name (default: the server's model)." }),
    },
    resolve: (_, { prompt, model }, ctx) => {
      try {
        if (model != null && model !== ctx.model.manifest.name) throw badInput(`unknown model "${model}" (this server has "${ctx.model.manifest.name}")`);
        validatePrompt(prompt);
        return { ...ctx.model.prompts.encode(prompt), maxTokens: ctx.model.manifest.architecture.maxTextLength };
      } catch (e) {
        throw toGraphQLError(e);
      }
    },
  }),
);
