/**
 * Prometheus metrics of one Mosaic process (API, worker, or both), in a registry of its own so several
 * apps in one process (tests) keep separate counts. The worker reports what it does as it does it
 * (generations by outcome, durations, decoder steps, images); what lives in the database (the queue)
 * or in other objects (the event bus, subscriptions) is read at scrape time. Every name is documented
 * in docs/operations.md.
 */
import client, { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Prisma } from "../db/client.ts";

/** Durations of generations: a second or less on a GPU, minutes on a busy CPU. */
const GENERATION_BUCKETS = [0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300, 600];
/** Queue waits: none to many minutes. */
const WAIT_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800];
/** Decoder steps: about a millisecond on a GPU to a second for a large batch on a CPU. */
const STEP_BUCKETS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2];
const HTTP_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export type Outcome = "completed" | "failed" | "cancelled";

/** What the scrape-time collectors read. */
export interface MetricSources {
  prisma: Prisma;
  bus: { reconnects: number; connected: boolean };
  role: string;
  model: { name: string; version: string };
  /** The engine's execution provider ("none" for an API process). */
  provider: string;
  /** Most images a worker decodes together (0 for an API process). */
  batchImages: number;
  /** Subscriptions open now (every generationEvents stream this process serves). */
  subscriptions?: () => number;
}

export class Metrics {
  readonly registry = new Registry();
  readonly generations: Counter<"outcome">;
  readonly failures: Counter<"code">;
  readonly requeued: Counter<"reason">;
  readonly queueWait: Histogram;
  readonly firstPreview: Histogram;
  readonly runTime: Histogram;
  readonly endToEnd: Histogram;
  readonly stepTime: Histogram;
  readonly tokens: Counter;
  readonly tokensPerSecond: Gauge;
  readonly images: Counter;
  readonly batchImagesNow: Gauge;
  readonly batchOccupancy: Gauge;
  readonly databaseRetries: Counter<"operation">;
  readonly httpRequests: Counter<"route" | "method" | "status">;
  readonly httpDuration: Histogram<"route">;
  private sources: MetricSources | null = null;
  private reconnectsSeen = 0;
  /** One queue query per scrape, shared by the gauges that read it. */
  private depth: { at: number; rows: Promise<QueueRow[] | null> } | null = null;

  constructor() {
    const registers = [this.registry];
    client.collectDefaultMetrics({ register: this.registry });
    this.generations = new Counter({ name: "mosaic_generations_total", help: "Generations this worker finished, by outcome (completed, failed, cancelled); requeues are counted apart.", labelNames: ["outcome"], registers });
    for (const outcome of ["completed", "failed", "cancelled"]) this.generations.inc({ outcome }, 0);
    this.failures = new Counter({ name: "mosaic_generation_failures_total", help: "Failed generations by error code (WORKER_LOST, INFERENCE_FAILED, INTERNAL, ...).", labelNames: ["code"], registers });
    this.requeued = new Counter({ name: "mosaic_generations_requeued_total", help: "Running generations put back in the queue: lost (their worker stopped answering; counted by the process that requeued them) or handed_back (this worker stopped cleanly).", labelNames: ["reason"], registers });
    for (const reason of ["lost", "handed_back"]) this.requeued.inc({ reason }, 0);
    this.queueWait = new Histogram({ name: "mosaic_queue_wait_seconds", help: "From a generation's creation to its first claim by a worker (startedAt - createdAt, both the database's clock).", buckets: WAIT_BUCKETS, registers });
    this.firstPreview = new Histogram({ name: "mosaic_time_to_first_preview_seconds", help: "From a generation's creation to its first preview stored (queue wait plus the worker's time to it); first attempts only.", buckets: GENERATION_BUCKETS, registers });
    this.runTime = new Histogram({ name: "mosaic_generation_run_seconds", help: "From a worker's claim to the images stored (this attempt): decoding, VQ decoding, PNG encoding and the writes.", buckets: GENERATION_BUCKETS, registers });
    this.endToEnd = new Histogram({ name: "mosaic_generation_seconds", help: "From a generation's creation to its images stored: queue wait plus run time (what a client waits).", buckets: GENERATION_BUCKETS, registers });
    this.stepTime = new Histogram({ name: "mosaic_decoder_step_seconds", help: "Time of one decoder step of the worker's batch (all its rows, previews due at that step included).", buckets: STEP_BUCKETS, registers });
    this.tokens = new Counter({ name: "mosaic_decoder_tokens_total", help: "Image tokens sampled (one per image per step; replayed tokens of a resumed job are not counted). rate() is tokens per second.", registers });
    this.tokensPerSecond = new Gauge({ name: "mosaic_decoder_tokens_per_second", help: "Tokens sampled by the last decoder step that sampled any, over its duration.", registers });
    this.images = new Counter({ name: "mosaic_images_total", help: "Images completed and stored. rate() is images per second.", registers });
    this.batchImagesNow = new Gauge({ name: "mosaic_batch_images", help: "Images in the worker's batch after the last decoder step.", registers });
    this.batchOccupancy = new Gauge({ name: "mosaic_batch_occupancy_ratio", help: "Images in the batch over MOSAIC_WORKER_BATCH after the last decoder step (above 1 while a larger generation runs alone).", registers });
    this.databaseRetries = new Counter({ name: "mosaic_database_retries_total", help: "Worker writes that found the database unreachable and were retried until it answered (one per outage per write).", labelNames: ["operation"], registers });
    this.httpRequests = new Counter({ name: "mosaic_http_requests_total", help: "HTTP requests answered, by route, method and status.", labelNames: ["route", "method", "status"], registers });
    this.httpDuration = new Histogram({ name: "mosaic_http_request_duration_seconds", help: "Time to answer an HTTP request (to the end of the response; SSE streams last as long as the subscription).", labelNames: ["route"], buckets: HTTP_BUCKETS, registers });

    const self = this;
    new Gauge({
      name: "mosaic_queue_depth", help: "Generations queued or running, by model and status (read from the database at scrape time; the same in every process).",
      labelNames: ["model", "status"], registers,
      async collect() {
        if (!self.sources) return;
        this.reset();
        const rows = await self.queueDepth(self.sources.prisma);
        if (!rows) return;
        for (const status of ["QUEUED", "RUNNING"]) this.set({ model: self.sources.model.name, status }, 0);
        for (const r of rows) this.set({ model: r.model, status: r.status }, r.n);
      },
    });
    new Gauge({
      name: "mosaic_database_up", help: "1 when the database answered this scrape's queue query (within 2 s), else 0.", registers,
      async collect() {
        if (self.sources) this.set((await self.queueDepth(self.sources.prisma)) ? 1 : 0);
      },
    });
    new Counter({
      name: "mosaic_event_bus_reconnects_total", help: "Times the LISTEN connection was lost and made again.", registers,
      collect() {
        const n = self.sources?.bus.reconnects ?? 0;
        if (n > self.reconnectsSeen) this.inc(n - self.reconnectsSeen);
        self.reconnectsSeen = n;
      },
    });
    new Gauge({
      name: "mosaic_event_bus_connected", help: "1 while the LISTEN connection is up.", registers,
      collect() {
        this.set(self.sources?.bus.connected ? 1 : 0);
      },
    });
    new Gauge({
      name: "mosaic_active_subscriptions", help: "generationEvents subscriptions open in this process (SSE and graphql-ws).", registers,
      collect() {
        this.set(self.sources?.subscriptions?.() ?? 0);
      },
    });
    new Gauge({
      name: "mosaic_info", help: "Always 1: this process's role, model and the engine's execution provider (none for an API).",
      labelNames: ["role", "model", "version", "provider", "batch_images"], registers,
      collect() {
        const s = self.sources;
        this.reset();
        if (s) this.set({ role: s.role, model: s.model.name, version: s.model.version, provider: s.provider, batch_images: String(s.batchImages) }, 1);
      },
    });
  }

  /** What scrape-time collectors read (set once the app is up). */
  attach(sources: MetricSources): void {
    this.sources = sources;
  }

  /** A decoder step ended: `tokens` were sampled in it, the batch holds `images` images now. */
  step(ms: number, tokens: number, images: number, limit: number): void {
    this.stepTime.observe(ms / 1000);
    // Steps that sampled nothing (a resumed job replaying its codes) leave the last rate standing.
    if (tokens > 0 && ms > 0) this.tokensPerSecond.set((tokens * 1000) / ms);
    this.batchImagesNow.set(images);
    this.batchOccupancy.set(limit > 0 ? images / limit : 0);
  }

  private queueDepth(prisma: Prisma): Promise<QueueRow[] | null> {
    const now = performance.now();
    // The collectors of one scrape run together: they share one query.
    if (!this.depth || now - this.depth.at > 250) this.depth = { at: now, rows: queueDepth(prisma) };
    return this.depth.rows;
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

interface QueueRow {
  model: string;
  status: string;
  n: number;
}

/** Queued and running generations by model, or null when the database does not answer within 2 s. */
async function queueDepth(prisma: Prisma): Promise<QueueRow[] | null> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      prisma.$queryRaw<QueueRow[]>`
        SELECT model, status::text AS status, count(*)::int AS n FROM "Generation" WHERE status IN ('QUEUED', 'RUNNING') GROUP BY model, status`,
      new Promise<null>((resolve) => { timer = setTimeout(() => resolve(null), 2_000); }),
    ]);
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
}
