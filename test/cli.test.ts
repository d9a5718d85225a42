import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { promisify } from "node:util";
import sharp from "sharp";
import { PACKAGE_ROOT } from "../src/engine/settings.ts";
import { MODEL_DIR, shippedShape, type Json } from "./helpers.ts";

const run = promisify(execFile);
const BIN = path.join(PACKAGE_ROOT, "bin", "mosaic.js");
const scratch: string[] = [];
after(() => Promise.all(scratch.map((d) => rm(d, { recursive: true, force: true }))));

async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(tmpdir(), "mosaic-cli-"));
  scratch.push(d);
  return d;
}

test("mosaic generate writes the asked number of valid PNGs of the asked size, a grid and previews", async () => {
  const dir = await tempDir();
  const out = path.join(dir, "out");
  const previews = path.join(dir, "previews");
  const { stdout, stderr } = await run(process.execPath, [BIN, "generate", "a big red circle on a blue background",
    "--count", "3", "--seed", "7", "--out", out, "--size", "128", "--previews", previews, "--preview-interval", "64", "--model", MODEL_DIR]);
  assert.deepEqual((await readdir(out)).sort(), ["1.png", "2.png", "3.png", "grid.png"]);
  for (const f of ["1.png", "2.png", "3.png"]) {
    const meta = await sharp(path.join(out, f)).metadata();
    assert.equal(meta.format, "png");
    assert.equal(meta.width, 128);
    assert.equal(meta.height, 128);
  }
  const grid = await sharp(path.join(out, "grid.png")).metadata();
  assert.ok(grid.width! > 128 * 2 && grid.width! < 128 * 2 + 20, `grid width ${grid.width}`);
  // Named by the token each shows (every 64 codes, after the scene plan where the model writes one), and the last.
  const shape = shippedShape();
  const named = shape.previewSteps(64).map((t) => `preview-${String(t).padStart(3, "0")}.png`);
  assert.deepEqual((await readdir(previews)).sort(), named.sort());
  assert.ok(stdout.includes(path.join(out, "1.png")), "prints where files went");
  assert.match(stderr, /seed: 7/);
  assert.match(stderr, new RegExp(`${shape.sequenceLength}/${shape.sequenceLength} tokens`), "progress reaches the last token");
});

test("mosaic generate --format webp and jpeg", async () => {
  const dir = await tempDir();
  for (const format of ["webp", "jpeg"]) {
    await run(process.execPath, [BIN, "generate", "a small yellow square", "--seed", "1", "--out", dir, "--format", format, "--model", MODEL_DIR]);
    assert.equal((await sharp(path.join(dir, `1.${format}`)).metadata()).format, format);
  }
});

test("bad input exits non-zero with a clear message", async () => {
  const cases: [string[], RegExp][] = [
    [["generate", "x", "--count", "12"], /count must be a whole number from 1 to 9/],
    [["generate", "x", "--top-k", "lots"], /--top-k must be a number/],
    [["generate", "x", "--format", "gif"], /format must be one of png, webp, jpeg/],
    [["generate"], /give exactly one prompt/],
    [["generate", "x", "--model", "/nonexistent"], /model.json: not found/],
    [["frobnicate"], /unknown command/],
    [["serve", "--role", "bogus"], /--role must be all or api/],
  ];
  for (const [args, message] of cases) {
    await assert.rejects(run(process.execPath, [BIN, ...args, ...(args.includes("--model") ? [] : ["--model", MODEL_DIR])]), (e: Json) => {
      assert.notEqual(e.code, 0);
      assert.match(e.stderr, message);
      assert.doesNotMatch(e.stderr, /at .*\.ts:\d+/, "no stack trace for user errors");
      return true;
    });
  }
});

test("a DATABASE_URL that cannot be used is one line naming what is wrong, without the password or a stack", async () => {
  const base = process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/test";
  const server = new URL(base);
  const missing = new URL(base);
  missing.password = "s3cret-pw";
  missing.pathname = "/no_such_database_here";
  const cases: [string, number, RegExp][] = [
    ["notaurl", 2, /DATABASE_URL must be a postgresql:\/\/user@host:port\/database URL \[BAD_INPUT\]/],
    [missing.href, 1, /cannot use the database at [^ ]+\/no_such_database_here: database "no_such_database_here" does not exist \[DATABASE_UNAVAILABLE\]/],
    [`postgresql://postgres@${server.hostname}:1/test`, 1, /cannot use the database at [^ ]+:1\/test: connect ECONNREFUSED .* \[DATABASE_UNAVAILABLE\]/],
  ];
  for (const [url, code, message] of cases) {
    await assert.rejects(run(process.execPath, [BIN, "serve", "--port", "0", "--model", MODEL_DIR], { env: { ...process.env, DATABASE_URL: url } }), (e: Json) => {
      assert.equal(e.code, code, e.stderr);
      assert.match(e.stderr, message);
      assert.equal(e.stderr.trim().split("\n").length, 1, e.stderr);
      assert.doesNotMatch(e.stderr, /s3cret-pw/);
      return true;
    });
  }
});

test("mosaic --help documents every sampling flag", async () => {
  const { stdout } = await run(process.execPath, [BIN, "--help"]);
  for (const flag of ["--count", "--seed", "--guidance", "--top-k", "--top-p", "--temperature", "--model", "--format", "--previews", "--size"]) {
    assert.ok(stdout.includes(flag), flag);
  }
});

test("every environment variable the server reads is in mosaic --help and the README's configuration table", async () => {
  const { stdout } = await run(process.execPath, [BIN, "--help"]);
  const readme = await readFile(path.join(PACKAGE_ROOT, "README.md"), "utf8");
  const sources = await Promise.all((await readdir(path.join(PACKAGE_ROOT, "src"), { recursive: true }))
    .filter((f) => f.endsWith(".ts") && !f.startsWith("db/generated")).map((f) => readFile(path.join(PACKAGE_ROOT, "src", f), "utf8")));
  const names = new Set<string>();
  for (const src of sources) for (const m of src.matchAll(/process\.env\.([A-Z_]+)|[a-z]+Env\("([A-Z_]+)"/g)) names.add((m[1] ?? m[2])!);
  assert.ok(names.size >= 10, [...names].join(" "));
  for (const name of names) {
    assert.ok(stdout.includes(name), `${name} in mosaic --help`);
    assert.ok(readme.includes(`| \`${name}\``), `${name} in the README's table`);
  }
});
