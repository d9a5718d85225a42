/**
 * The web app's DOM-free parts in Node: the PNG text-chunk writer (read back here, by sharp and by
 * a CRC check of every chunk) and the grid's never-coarser rule; and its type check.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { test } from "node:test";
import { crc32 as zlibCrc32 } from "node:zlib";
import sharp from "sharp";
import { addTextChunks, crc32, pngText, readTextChunks } from "../web/src/png.ts";
import { Board, finer, type Picture } from "../web/src/board.ts";
import { PACKAGE_ROOT } from "../src/engine/settings.ts";
import { ensureWebBuilt } from "./e2e/browser.ts";

function chunks(png: Uint8Array): { type: string; ok: boolean }[] {
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const out = [];
  for (let o = 8; o < png.length; ) {
    const length = view.getUint32(o);
    const type = Buffer.from(png.subarray(o + 4, o + 8)).toString("latin1");
    const crc = view.getUint32(o + 8 + length);
    out.push({ type, ok: zlibCrc32(png.subarray(o + 4, o + 8 + length)) === crc });
    o += 12 + length;
  }
  return out;
}

test("PNG text chunks: AUTOMATIC1111's parameters, Latin-1 as tEXt, the rest as iTXt, valid CRCs, the image unchanged", async () => {
  assert.equal((crc32(new TextEncoder().encode("IEND")) ^ 0xffffffff) >>> 0, 0xae426082);
  const raw = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 200, g: 10, b: 10 } } }).png().toBuffer();
  const info = { prompt: "a big red circle in the centre, blue background", seed: 42, model: "mosaic-shapes", modelVersion: "1.0.0", width: 256, height: 256, steps: 256, guidanceScale: 1, topK: 16, topP: 1, temperature: 0.7 };
  const out = addTextChunks(new Uint8Array(raw), { ...pngText(info), Comment: "ünïcode ✓ 🟥" });
  const types = chunks(out);
  assert.ok(types.every((c) => c.ok), JSON.stringify(types));
  assert.deepEqual(types.map((c) => c.type).slice(0, 6), ["IHDR", "tEXt", "tEXt", "tEXt", "tEXt", "iTXt"]);
  const text = readTextChunks(out);
  assert.equal(text.parameters, `${info.prompt}\nSteps: 256, Sampler: top-k/top-p, CFG scale: 1, Seed: 42, Size: 256x256, Model: mosaic-shapes, Model version: 1.0.0, Top-k: 16, Top-p: 1, Temperature: 0.7`);
  assert.equal(text.Comment, "ünïcode ✓ 🟥");
  assert.equal(JSON.parse(text.mosaic!).seed, 42);
  const a = await sharp(raw).raw().toBuffer();
  const b = await sharp(Buffer.from(out)).raw().toBuffer();
  assert.ok(a.equals(b), "same pixels");
  assert.throws(() => addTextChunks(new Uint8Array([1, 2, 3]), {}), /not a PNG/);
});

test("the grid never goes back to a coarser picture, whatever order pictures load in", () => {
  const p = (stage: Picture["stage"], tokens: number): Picture => ({ stage, tokens, url: `${stage}-${tokens}` });
  assert.ok(finer(p("preview", 16), p("mosaic", 200)));
  assert.ok(finer(p("mosaic", 17), p("mosaic", 16)));
  assert.ok(!finer(p("mosaic", 256), p("preview", 16)));
  assert.ok(!finer(p("preview", 256), p("final", 256)));
  const b = new Board(2);
  const slowPreview = p("preview", 64);
  assert.ok(b.offer(0, p("mosaic", 10)));
  assert.ok(b.settle(0, p("mosaic", 10)));
  assert.ok(b.offer(0, slowPreview));
  assert.ok(!b.offer(0, p("mosaic", 80)), "a mosaic is not loaded once a preview is on its way");
  const final = p("final", 256);
  assert.ok(b.offer(0, final));
  assert.ok(b.settle(0, final));
  assert.ok(!b.settle(0, slowPreview), "the preview that loads after the final image is not shown");
  assert.equal(b.cells()[0], final);
  assert.ok(!b.offer(0, p("preview", 256)));
  assert.ok(b.offer(1, p("preview", 32)));
  assert.ok(!b.settle(1, p("preview", 32), false), "a picture that failed to load is not shown");
  assert.equal(b.cells()[1], null);
  assert.ok(!b.offer(2, p("final", 256)), "no cell past the count");
});

test("the web app type-checks against the operations generated from schema.graphql (tsc -p web/tsconfig.json)", async () => {
  ensureWebBuilt();
  const r = spawnSync(process.execPath, [path.join(PACKAGE_ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", path.join(PACKAGE_ROOT, "web", "tsconfig.json")], { encoding: "utf8" });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
});
