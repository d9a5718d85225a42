-- Each worker's measured decoding rate, written with its heartbeat: queued ETAs divide the work ahead
-- by the sum over the live workers of a model.
ALTER TABLE "WorkerProcess" ADD COLUMN "imagesPerSecond" DOUBLE PRECISION;
