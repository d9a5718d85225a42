/**
 * Every operation the page sends, typed by graphql-codegen's client preset from schema.graphql
 * (web/build.mjs writes web/src/gql at install; a field the schema lacks fails the build).
 */
import { graphql } from "./gql/index.ts";

export const ModelsQuery = graphql(`
  query Models {
    models { name version description defaultGuidanceScale defaultTopK defaultTopP defaultTemperature maxTextTokens tokensPerImage defaultPreviewInterval imageWidth imageHeight }
  }
`);

export const PromptCheckQuery = graphql(`
  query PromptCheck($prompt: String!) {
    promptCheck(prompt: $prompt) { normalized unknownWords truncatedWords tokens maxTokens blank }
  }
`);

export const GenerationFields = graphql(`
  fragment GenerationFields on Generation {
    id prompt normalizedPrompt model status count seed previewInterval tokensDone tokensTotal
    createdAt finishedAt queuePosition visibility mine
    settings { guidanceScale topK topP temperature }
    error { code message }
  }
`);

export const GenerationQuery = graphql(`
  query Generation($id: ID!) {
    generation(id: $id) { ...GenerationFields }
  }
`);

export const CreateGenerationMutation = graphql(`
  mutation CreateGeneration($input: CreateGenerationInput!) {
    createGeneration(input: $input) { ...GenerationFields }
  }
`);

export const CancelGenerationMutation = graphql(`
  mutation CancelGeneration($id: ID!) {
    cancelGeneration(id: $id) { id status }
  }
`);

/**
 * A generation's events. The per-token mosaic of every image rides on each Progress event (m0-m8);
 * `mosaic(index)` is an error past the generation's count, hence the @include flags. Previews come
 * inline (dataUrl), not as links: the worker deletes them when the final images are stored, so a
 * link fetched a moment late would be a 404.
 */
export const GenerationEventsSubscription = graphql(`
  subscription GenerationEvents($id: ID!, $i1: Boolean!, $i2: Boolean!, $i3: Boolean!, $i4: Boolean!, $i5: Boolean!, $i6: Boolean!, $i7: Boolean!, $i8: Boolean!) {
    generationEvents(id: $id) {
      __typename
      ... on Queued { position etaSeconds generation { id status tokensDone tokensTotal } }
      ... on Started { generation { id status tokensDone tokensTotal } }
      ... on Progress {
        tokensDone tokensTotal
        previews { index tokensDone dataUrl }
        m0: mosaic(index: 0)
        m1: mosaic(index: 1) @include(if: $i1)
        m2: mosaic(index: 2) @include(if: $i2)
        m3: mosaic(index: 3) @include(if: $i3)
        m4: mosaic(index: 4) @include(if: $i4)
        m5: mosaic(index: 5) @include(if: $i5)
        m6: mosaic(index: 6) @include(if: $i6)
        m7: mosaic(index: 7) @include(if: $i7)
        m8: mosaic(index: 8) @include(if: $i8)
      }
      ... on Completed { generation { id status tokensDone tokensTotal finishedAt images { id index seed width height url(size: 256) } } }
      ... on Failed { code message generation { id status tokensDone tokensTotal } }
      ... on Cancelled { generation { id status tokensDone tokensTotal } }
    }
  }
`);

export const ImageUrlQuery = graphql(`
  query ImageUrl($id: ID!, $format: ImageFormat!, $size: Int, $upscale: Upscale!) {
    node(id: $id) { ... on Image { id url(format: $format, size: $size, upscale: $upscale) } }
  }
`);

export const GalleryQuery = graphql(`
  query Gallery($first: Int!, $after: String, $search: String) {
    generations(first: $first, after: $after, promptContains: $search) {
      edges { cursor node { id prompt status count seed createdAt images { id index seed url } } }
      pageInfo { hasNextPage endCursor }
    }
  }
`);
