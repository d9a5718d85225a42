/** The operations GraphiQL opens with: create, subscribe, list. */
export const EXAMPLE_TABS = [
  {
    query: `# Queue a generation. Copy the returned id into the subscription tab.
mutation Create {
  createGeneration(input: { prompt: "a big red circle in the centre, blue background", count: 4 }) {
    id
    status
    seed
    normalizedPrompt
  }
}`,
  },
  {
    query: `# Watch it: queued, started, progress with previews, then the final images.
subscription Watch($id: ID!) {
  generationEvents(id: $id) {
    __typename
    ... on Queued { position etaSeconds }
    ... on Progress { tokensDone tokensTotal previews { index url(size: 128) } mosaic(size: 128) }
    ... on Completed { generation { images { index seed url(size: 256) } } }
    ... on Failed { code message }
  }
}`,
    variables: `{ "id": "paste the id from the Create tab" }`,
  },
  {
    query: `# Recent generations, newest first.
query Recent {
  generations(first: 10) {
    edges { node { id prompt status progress createdAt images { url(size: 128) } } }
    pageInfo { hasNextPage endCursor }
  }
  models { name description imageWidth defaultGuidanceScale }
  health { ok role queued running }
}`,
  },
];
