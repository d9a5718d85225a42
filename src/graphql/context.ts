/** What every resolver can reach: the database, the event bus and the model's description. */
import type { Access } from "../auth/access.ts";
import type { Viewer } from "../auth/viewer.ts";
import type { Prisma } from "../db/client.ts";
import type { ModelInfo } from "../engine/model.ts";
import type { EventBus } from "../jobs/events.ts";
import type { QueueSettings } from "../jobs/queue.ts";
import type { LogFn } from "../ops/log.ts";
import type { Loaders } from "./loaders.ts";

export type Role = "all" | "api" | "worker";

export interface AppContext {
  prisma: Prisma;
  bus: EventBus;
  model: ModelInfo;
  role: Role;
  startedAt: Date;
  queue: QueueSettings;
  /** Where server-side detail goes (stacks, driver messages); clients get codes and plain messages. */
  log: LogFn;
  /** Authentication mode, key lookup, quotas and URL signing. */
  access: Access;
}

export interface Context extends AppContext {
  /** Where this request came in, for absolute image URLs ("" when unknown: URLs stay relative). */
  origin: string;
  /** Aborts when the client goes away (HTTP/SSE), so subscriptions stop watching at once. */
  signal?: AbortSignal;
  /** Who is asking: their key (if any) and address. */
  viewer: Viewer;
  /** This request's batched loaders. */
  loaders: Loaders;
}
