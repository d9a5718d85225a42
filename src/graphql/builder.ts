import SchemaBuilder from "@pothos/core";
import RelayPlugin from "@pothos/plugin-relay";
import type { Context } from "./context.ts";

export const builder = new SchemaBuilder<{
  Context: Context;
  Scalars: {
    DateTime: { Input: Date; Output: Date };
  };
  DefaultFieldNullability: false;
}>({
  plugins: [RelayPlugin],
  defaultFieldNullability: false,
  relay: {
    clientMutationId: "omit",
    cursorType: "String",
    idFieldOptions: { description: "Globally unique id (use it with `node`)." },
    nodeTypeOptions: { description: "An object with a global id." },
    pageInfoTypeOptions: { description: "Where a page of a connection sits in the whole list." },
    nodeQueryOptions: { description: "Any object by its global id.", args: { id: { description: "The object's global id." } } },
    nodesQueryOptions: { description: "Objects by their global ids.", args: { ids: { description: "The objects' global ids." } } },
    firstArgOptions: { description: "Return the first n items (from the start, or after `after`)." },
    lastArgOptions: { description: "Return the last n items (from the end, or before `before`)." },
    afterArgOptions: { description: "Start after this cursor." },
    beforeArgOptions: { description: "End before this cursor." },
    cursorFieldOptions: { description: "Where this edge sits, for `after` / `before`." },
    nodeFieldOptions: { description: "The item." },
    edgesFieldOptions: { description: "The items of this page with their cursors." },
    pageInfoFieldOptions: { description: "Paging information." },
    hasNextPageFieldOptions: { description: "More items follow this page." },
    hasPreviousPageFieldOptions: { description: "More items precede this page." },
    startCursorFieldOptions: { description: "Cursor of the first item of the page." },
    endCursorFieldOptions: { description: "Cursor of the last item of the page." },
    defaultConnectionTypeOptions: { description: "A page of a list." },
    defaultEdgeTypeOptions: { description: "An item of a list with its cursor." },
  },
});

builder.scalarType("DateTime", {
  description: "A point in time, as an ISO-8601 string in UTC.",
  serialize: (d) => d.toISOString(),
  parseValue: (v) => {
    const d = new Date(String(v));
    if (Number.isNaN(d.getTime())) throw new TypeError("DateTime must be an ISO-8601 string");
    return d;
  },
});

builder.queryType({ description: "Read generations, images, models and the server's health." });
builder.mutationType({ description: "Submit and cancel generations." });
builder.subscriptionType({ description: "Follow a generation as it runs." });
