import assert from "node:assert/strict";
import { test } from "node:test";
import { slotsToStart } from "../src/jobs/eta.ts";
import { Throughput } from "../src/jobs/throughput.ts";

test("throughput: images held over the time each holds its room; idle time changes nothing", () => {
  const t = new Throughput();
  assert.equal(t.imagesPerSecond(0), null, "nothing measured yet");
  t.claimed(1, 0);
  assert.equal(t.imagesPerSecond(1000), null, "no room freed yet");
  t.freed(1, 1500, 1500);
  assert.ok(Math.abs(t.imagesPerSecond(1500)! - 1 / 1.5) < 1e-9, `${t.imagesPerSecond(1500)}`);
  assert.ok(Math.abs(t.imagesPerSecond(3_600_000)! - 1 / 1.5) < 1e-9, "an hour idle later, the same");
  assert.equal(t.due(0), true);
  assert.equal(t.due(400), false, "twice a second at most");
  assert.equal(t.due(500), true);
});

/**
 * A worker with 16 rooms and a backlog of one-image jobs, as test/durable.test.ts's backlog runs them:
 * the 16 first are claimed at `start` and free their rooms at `ends`; a room is claimed again as soon as
 * it comes free, and the i-th job after them holds it `holdMs(i)`. `each(now)` runs after every room
 * freed, until `stopMs`. Returns the rooms freed.
 */
function backlog(t: Throughput, start: number, ends: number[], holdMs: (i: number) => number, stopMs: number, each: (now: number) => void = () => {}): number {
  const claimedAt = ends.map(() => start);
  ends.forEach(() => t.claimed(1, start));
  const until = [...ends];
  let freed = 0;
  for (let job = 0; ; job++) {
    const i = until.indexOf(Math.min(...until));
    const now = until[i]!;
    if (now > stopMs) return freed;
    t.freed(1, now - claimedAt[i]!, now);
    freed++;
    claimedAt[i] = now;
    t.claimed(1, now);
    until[i] = now + holdMs(job);
    each(now);
  }
}

/** The rate over the throughput of the whole run, after every room freed past the first `warmS` seconds. */
function fullBatch(holdMs: (i: number) => number, seconds: number, warmS: number): number[] {
  const t = new Throughput();
  const rates: number[] = [];
  const ends = Array.from({ length: 16 }, (_, i) => holdMs(i));
  const freed = backlog(t, 0, ends, (i) => holdMs(16 + i), seconds * 1000, (now) => {
    if (now > warmS * 1000) rates.push(t.imagesPerSecond(now)!);
  });
  return rates.map((r) => r / (freed / seconds));
}

test("throughput of a full batch: within 15% at every moment, in waves or spread out", () => {
  // Hold times 2.4-5.3 s in a pattern that repeats every 16 jobs, as measured in the backlog.
  const spread = fullBatch((i) => 2400 + ((i * 7) % 16) * 180, 120, 20);
  // All 16 alike: they start together and end together, wave after wave.
  const waves = fullBatch(() => 4000, 120, 20);
  for (const [name, ratios] of [["spread", spread], ["waves", waves]] as const) {
    const [low, high] = [Math.min(...ratios), Math.max(...ratios)];
    assert.ok(low > 0.85 && high < 1.15, `${name}: rate / throughput between ${low.toFixed(2)} and ${high.toFixed(2)}`);
  }
});

test("throughput follows a change of load within three windows", () => {
  const t = new Throughput();
  // A minute of one job at a time, 2 s each: half an image a second.
  let now = 0;
  for (; now < 60_000; now += 2000) {
    t.claimed(1, now);
    t.freed(1, 2000, now + 2000);
  }
  assert.ok(Math.abs(t.imagesPerSecond(now)! - 0.5) < 1e-9);
  // Then a full batch of 16, each image held 5 s, spread out: 3.2 images a second.
  const stop = now + 30_000;
  backlog(t, now, Array.from({ length: 16 }, (_, i) => now + 5000 * ((i + 1) / 16)), () => 5000, stop);
  const rate = t.imagesPerSecond(stop)!;
  assert.ok(Math.abs(rate / 3.2 - 1) < 0.1, `${rate.toFixed(2)} images a second 30 s after the batch filled (3.2)`);
});

test("a queued generation starts when enough rooms have come free, in waves or one by one", () => {
  // 16 images a second for 16 rooms: one image takes 1 s.
  const wave = Array.from({ length: 16 }, () => ({ count: 1, remaining: 0.5 }));
  assert.equal(slotsToStart(wave, 0, 1, 16), 0.5, "the next room comes free with the wave");
  assert.equal(slotsToStart(wave, 15, 1, 16), 0.5, "the 16th too");
  assert.equal(slotsToStart(wave, 16, 1, 16), 1.5, "the 17th with the next wave");
  const spread = Array.from({ length: 16 }, (_, i) => ({ count: 1, remaining: i / 16 }));
  assert.equal(slotsToStart(spread, 0, 1, 16), 0);
  assert.equal(slotsToStart(spread, 8, 1, 16), 0.5);
  assert.equal(slotsToStart(spread, 16, 1, 16), 1);
  // A 3×3 grid needs nine rooms: the ninth to come free.
  assert.equal(slotsToStart(spread, 0, 9, 16), 0.5);
  // A generation of several images holds one room per image.
  assert.equal(slotsToStart([{ count: 4, remaining: 0.25 }], 4, 1, 4), 1.25);
  assert.equal(slotsToStart([], 10, 1, 2), 5, "nothing running: the queue ahead over the rate");
  // Rooms free now count: 10 of 16 busy, a 3×3 grid needs three more.
  const ten = Array.from({ length: 10 }, (_, i) => ({ count: 1, remaining: (i + 1) / 10 }));
  assert.equal(slotsToStart(ten, 0, 9, 10, 16), 0.3);
  assert.equal(slotsToStart(ten, 0, 6, 10, 16), 0, "six fit at once");
  // Larger than the batch: it runs alone once the batch is empty.
  assert.equal(slotsToStart(ten, 0, 20, 10, 16), 1);
  // A row with no tokens to count waits a whole image.
  assert.equal(slotsToStart([{ count: 1, remaining: Number.NaN }], 0, 1, 1), 1);
});
