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
 * a room is claimed again as soon as it comes free; each image holds its room 2.4-5.3 s, and the 16 of a
 * wave start together. Returns the measured rate / true throughput after every event past the first
 * `warmS` seconds.
 */
function waves(holdMs: (i: number) => number, seconds: number, warmS: number): number[] {
  const t = new Throughput();
  const rooms = Array.from({ length: 16 }, () => 0);
  rooms.forEach(() => t.claimed(1, 0));
  let freed = 0;
  let job = 0;
  const until = rooms.map(() => holdMs(job++));
  const ratios: number[] = [];
  for (;;) {
    const i = until.indexOf(Math.min(...until));
    const now = until[i]!;
    if (now > seconds * 1000) break;
    t.freed(1, now - rooms[i]!, now);
    freed++;
    rooms[i] = now;
    t.claimed(1, now);
    until[i] = now + holdMs(job++);
    // The true throughput: images freed so far over the time so far.
    if (now > warmS * 1000) ratios.push(t.imagesPerSecond(now)! / (freed / (now / 1000)));
  }
  return ratios;
}

test("throughput over the waves of a full batch: within 15% at every moment", () => {
  // Hold times 2.4-5.3 s in a pattern that repeats every 16 jobs, as measured in the backlog.
  const hold = (i: number) => 2400 + ((i * 7) % 16) * 180;
  const ratios = waves(hold, 120, 20);
  const [low, high] = [Math.min(...ratios), Math.max(...ratios)];
  assert.ok(low > 0.85 && high < 1.15, `rate / throughput between ${low.toFixed(2)} and ${high.toFixed(2)}`);
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
});
