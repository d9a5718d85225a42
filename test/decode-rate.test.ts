import assert from "node:assert/strict";
import { test } from "node:test";
import { DecodeRate } from "../src/jobs/decode-rate.ts";

test("the decoding rate: images per second from step wall times, averaged over about a second, reported twice a second", () => {
  const r = new DecodeRate(256);
  assert.equal(r.imagesPerSecond, null);
  assert.equal(r.add(0, 100, 0), false, "an idle step says nothing");
  // 4 images, one token each in 100 ms: 4 / 256 / 0.1 = 0.15625 images a second.
  assert.equal(r.add(4, 100, 1000), true);
  assert.equal(r.imagesPerSecond, 0.15625);
  // A step twice as slow weighs 0.2 (its share of a second).
  assert.equal(r.add(4, 200, 1200), false, "reported 200 ms ago: not yet");
  assert.ok(Math.abs(r.imagesPerSecond! - (0.15625 * 0.8 + 0.078125 * 0.2)) < 1e-12);
  assert.equal(r.add(4, 200, 1500), true, "500 ms after the last report");
  // A step of a second or more replaces the average.
  r.add(8, 2000, 3000);
  assert.equal(r.imagesPerSecond, 8 / 256 / 2);
});
