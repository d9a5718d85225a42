-- One clock: every time is a timestamptz, and leases, heartbeats and run times come from the
-- database's now(). Before this migration the columns had no time zone and were written by two
-- clocks: Prisma wrote createdAt, finishedAt and the images' and previews' createdAt as UTC, while
-- startedAt and heartbeatAt came from now() in the session's time zone (the database's default).
-- Each is converted from the zone it was written in.
ALTER TABLE "Generation"
  ALTER COLUMN "createdAt" TYPE TIMESTAMPTZ(3) USING "createdAt" AT TIME ZONE 'UTC',
  ALTER COLUMN "createdAt" SET DEFAULT now(),
  ALTER COLUMN "finishedAt" TYPE TIMESTAMPTZ(3) USING "finishedAt" AT TIME ZONE 'UTC',
  ALTER COLUMN "startedAt" TYPE TIMESTAMPTZ(3) USING "startedAt" AT TIME ZONE current_setting('TimeZone'),
  ALTER COLUMN "heartbeatAt" TYPE TIMESTAMPTZ(3) USING "heartbeatAt" AT TIME ZONE current_setting('TimeZone');

ALTER TABLE "Image"
  ALTER COLUMN "createdAt" TYPE TIMESTAMPTZ(3) USING "createdAt" AT TIME ZONE 'UTC',
  ALTER COLUMN "createdAt" SET DEFAULT now();

ALTER TABLE "Preview"
  ALTER COLUMN "createdAt" TYPE TIMESTAMPTZ(3) USING "createdAt" AT TIME ZONE 'UTC',
  ALTER COLUMN "createdAt" SET DEFAULT now();

-- Claiming is per model: a worker takes only the generations of the model it serves.
CREATE INDEX "Generation_model_status_createdAt_idx" ON "Generation"("model", "status", "createdAt");

-- Live workers and the model each serves, so `models` can say whether anyone serves a model.
CREATE TABLE "WorkerProcess" (
    "id" TEXT NOT NULL,
    "model" TEXT NOT NULL,
    "startedAt" TIMESTAMPTZ(3) NOT NULL DEFAULT now(),
    "heartbeatAt" TIMESTAMPTZ(3) NOT NULL DEFAULT now(),

    CONSTRAINT "WorkerProcess_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "WorkerProcess_model_heartbeatAt_idx" ON "WorkerProcess"("model", "heartbeatAt");
