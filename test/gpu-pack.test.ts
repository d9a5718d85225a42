/**
 * The GPU machine's run (bench/gpu.sh) gets the tracked tree and what `pack` put in .gpu/, nothing
 * else: no npm, no network, no files generated at install. This checks, without packing, that the
 * package folders `pack` would take can be worked out and hold the engine's packages and not the
 * server's. Both ways it broke before: the bench scripts imported src/config.ts, which imports the
 * database layer (the Prisma client generated at install, git-ignored, so absent there), and the
 * closure then failed on that client's type-only relative import.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { test } from "node:test";
import { promisify } from "node:util";
import { PACKAGE_ROOT } from "../src/engine/settings.ts";

const run = promisify(execFile);

test("bench/gpu.sh closure lists the engine's packages, none of the database's or the API's", async () => {
  const { stdout } = await run("bash", ["bench/gpu.sh", "closure"], { cwd: PACKAGE_ROOT });
  const folders = stdout.trim().split("\n");
  for (const needed of ["tsx", "onnxruntime-node", "sharp", "@huggingface/tokenizers"]) {
    assert.ok(folders.includes(`node_modules/${needed}`), `${needed} is packed`);
  }
  for (const unwanted of ["@prisma/client", "pg", "graphql", "graphql-yoga"]) {
    assert.ok(!folders.includes(`node_modules/${unwanted}`), `${unwanted} is not packed`);
  }
});

test("the closure refuses entries that import files git ignores", async () => {
  // src/config.ts imports the database layer, whose generated client is git-ignored.
  await assert.rejects(run("node", ["bench/gpu/closure.mjs", "src/config.ts"], { cwd: PACKAGE_ROOT }),
    (e: Error & { stderr: string }) => /files git ignores[^\n]*src\/db\/generated/.test(e.stderr));
});
