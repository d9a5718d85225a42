-- How many images each worker's batch holds at most (MOSAIC_BATCH_IMAGES), written with its heartbeat:
-- queued ETAs count the rooms free now, not only those that running images will free.
ALTER TABLE "WorkerProcess" ADD COLUMN "rooms" INTEGER;
