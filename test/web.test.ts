/**
 * The web app (web/, issue #11) in real Chromium against real servers: create and watch a 3×3 grid,
 * cancel from the page and from the API, ride through a server restart, permalinks, the gallery,
 * vocabulary feedback, keyboard use, downloads with PNG text chunks, API keys, a phone, and an axe
 * scan. Skipped, with the reason, only where /usr/bin/chromium is absent (CI has it).
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { after, before, test } from "node:test";
import type { Browser, BrowserContextOptions, Page } from "playwright-core";
import sharp from "sharp";
import { startApp, type App } from "../src/app.ts";
import { DEFAULT_ACCESS } from "../src/auth/access.ts";
import { createKey } from "../src/auth/keys.ts";
import { readTextChunks } from "../web/src/png.ts";
import { consoleErrors, ensureWebBuilt, launch, noBrowser } from "./e2e/browser.ts";
import { MODEL_DIR, shippedShape } from "./helpers.ts";
import { create, createTestDatabase, gql, sql, startTestApp, stopEmbedded, uuidOf, waitFor, type TestDatabase } from "./server-helpers.ts";

const skip = noBrowser;
/** The shipped model's decoder steps per image (its scene plan's included: the progress bar's end and "Steps:"),
 * the text tokens it reads, its default sampling and its grid width (the default preview interval; model.json). */
const { sequenceLength, maxTextLength, sampling, gridWidth } = shippedShape();
const require = createRequire(import.meta.url);

let db: TestDatabase; // served by `app` (API and worker)
let queueDb: TestDatabase; // served by `api` alone: what is created there stays queued
let app: App;
let api: App;
let browser: Browser;

before(async () => {
  ensureWebBuilt();
  db = await createTestDatabase();
  queueDb = await createTestDatabase();
  app = await startTestApp(db.url, "all");
  api = await startTestApp(queueDb.url, "api");
  if (!skip) browser = await launch();
});

after(async () => {
  await browser?.close();
  await app?.close();
  await api?.close();
  await db?.drop();
  await queueDb?.drop();
  await stopEmbedded();
});

const DESKTOP: BrowserContextOptions = { viewport: { width: 1280, height: 800 } };

/** Records, per grid cell, each picture it shows (stage:tokens), from the first paint on. */
const RECORD_STAGES = () => {
  const w = window as unknown as { __seen: string[][] };
  w.__seen = [];
  new MutationObserver(() => {
    document.querySelectorAll(".grid > li").forEach((li, i) => {
      const img = li.querySelector("img");
      if (!img) return;
      const key = `${img.dataset.stage}:${img.dataset.tokens}`;
      const s = (w.__seen[i] ??= []);
      if (s[s.length - 1] !== key) s.push(key);
    });
  }).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-stage", "data-tokens", "src"] });
};

async function open(target: App, path: string, options: BrowserContextOptions = DESKTOP): Promise<{ page: Page; errors: string[]; close: () => Promise<void> }> {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  await page.addInitScript(RECORD_STAGES);
  const errors = consoleErrors(page);
  await page.goto(new URL(path, target.url!).href);
  return { page, errors, close: () => context.close() };
}

/** Waits until `n` final images are in the grid and loaded. */
async function finals(page: Page, n: number, timeout = 60_000): Promise<void> {
  try {
    await page.waitForFunction(
      (n) => {
        const imgs = [...document.querySelectorAll<HTMLImageElement>(".grid img[data-stage=final]")];
        return imgs.length === n && imgs.every((i) => i.complete && i.naturalWidth > 0);
      },
      n,
      { timeout },
    );
  } catch (e) {
    const seen = await page.evaluate(() => ({
      url: location.href, status: document.querySelector("#status")?.textContent, error: document.querySelector("#form-error")?.textContent,
      cells: [...document.querySelectorAll(".grid > li")].map((li) => li.querySelector("img")?.dataset.stage ?? "empty").join(","),
    }));
    throw new Error(`${(e as Error).message}; the page: ${JSON.stringify(seen)}`);
  }
}

const statusOf = (page: Page) => page.locator("#status").innerText();
const idOf = (page: Page) => decodeURIComponent(new URL(page.url()).pathname.replace(/^\/g\//, ""));
const generations = async (url: string) => (await sql(url, `SELECT count(*)::int AS n FROM "Generation"`))[0].n as number;

const RANK: Record<string, number> = { mosaic: 1, preview: 2, final: 3 };

let finished: { id: string; prompt: string; seed: number } | null = null;

test("the app's routes and files: index.html for /, /history and /g/<id>; hashed assets cached for good; nothing else", async () => {
  for (const path of ["/", "/history", "/g/R2VuZXJhdGlvbjp4", "/g/abc%2Fdef"]) {
    const res = await fetch(new URL(path, app.url!));
    assert.equal(res.status, 200, path);
    assert.match(await res.text(), /<div id="app"><\/div>/, path);
    assert.equal(res.headers.get("cache-control"), "no-cache");
  }
  const html = await (await fetch(new URL("/", app.url!))).text();
  const js = /src="(\/assets\/[^"]+\.js)"/.exec(html)![1]!;
  const css = /href="(\/assets\/[^"]+\.css)"/.exec(html)![1]!;
  const r = await fetch(new URL(js, app.url!));
  assert.equal(r.headers.get("cache-control"), "public, max-age=31536000, immutable");
  assert.equal(r.headers.get("x-content-type-options"), "nosniff");
  assert.match((await fetch(new URL(css, app.url!))).headers.get("content-type")!, /text\/css/);
  const icon = await fetch(new URL("/favicon.svg", app.url!));
  assert.equal(icon.status, 200);
  assert.equal(icon.headers.get("content-type"), "image/svg+xml");
  const head = await fetch(new URL("/", app.url!), { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(await head.text(), "");
  for (const path of ["/nope", "/g/a/b", "/assets/missing.js", "/assets/..%2f..%2fpackage.json", "/..%2fpackage.json", "/index.html", "/build.mjs"]) {
    assert.equal((await fetch(new URL(path, app.url!))).status, 404, path);
  }
  assert.equal((await gql(app, "{ health { ok } }")).data.health.ok, true, "GraphQL still answers");
});

test("create a 3×3: the grid fills live (mosaic, previews, final), never coarser, nine final images all visible at 1280×800", { skip }, async () => {
  const { page, errors, close } = await open(app, "/");
  try {
    await page.getByLabel("Prompt", { exact: true }).fill("a small green triangle on the left, yellow background");
    assert.equal(await page.inputValue("#count"), "9", "nine by default");
    await page.fill("#seed", "5");
    await page.getByRole("button", { name: "Generate" }).click();
    await page.waitForURL(/\/g\//);
    await finals(page, 9);
    await page.waitForFunction(() => document.querySelector("#status")?.textContent === "Done: 9 images.");
    assert.equal(await page.getByRole("progressbar", { name: "Progress" }).getAttribute("value"), String(sequenceLength));
    assert.equal(await page.getByRole("button", { name: "Generate" }).count(), 1, "Cancel turned back into Generate");
    const boxes = await page.locator(".grid > li").evaluateAll((lis) => lis.map((li) => li.getBoundingClientRect().toJSON() as DOMRect));
    assert.equal(boxes.length, 9);
    for (const b of boxes) assert.ok(b.left >= 0 && b.top >= 0 && b.right <= 1280 && b.bottom <= 800, `a cell at ${JSON.stringify(b)} is outside 1280×800`);
    assert.deepEqual(new Set(boxes.map((b) => Math.round(b.left))).size, 3, "three columns");
    const seen = (await page.evaluate(() => (window as unknown as { __seen: string[][] }).__seen)).map((s) => s.map((k) => {
      const [stage, tokens] = k.split(":");
      return { stage: stage!, tokens: Number(tokens) };
    }));
    assert.equal(seen.length, 9);
    for (const cell of seen) {
      assert.equal(cell[cell.length - 1]!.stage, "final");
      for (let i = 1; i < cell.length; i++) {
        const [a, b] = [cell[i - 1]!, cell[i]!];
        assert.ok(RANK[b.stage]! > RANK[a.stage]! || (b.stage === a.stage && b.tokens > a.tokens), `went back: ${JSON.stringify(cell)}`);
      }
    }
    assert.ok(seen.some((c) => c.some((p) => p.stage === "mosaic")), `the per-token mosaic was shown: ${JSON.stringify(seen)}`);
    assert.ok(seen.some((c) => c.some((p) => p.stage === "preview")), `a VQ preview was shown: ${JSON.stringify(seen)}`);
    const alts = await page.locator(".grid img").evaluateAll((imgs) => imgs.map((i) => (i as HTMLImageElement).alt));
    assert.match(alts[0]!, /a small green triangle on the left, yellow background.*seed 5/);
    assert.match(alts[8]!, /seed 13/);
    const rows = await sql(db.url, `SELECT status, seed, count FROM "Generation" WHERE prompt = $1`, ["a small green triangle on the left, yellow background"]);
    assert.deepEqual(rows, [{ status: "COMPLETED", seed: 5, count: 9 }]);
    finished = { id: idOf(page), prompt: "a small green triangle on the left, yellow background", seed: 5 };
    assert.deepEqual(errors, []);
  } finally {
    await close();
  }
});

test("an event lost to a race (its preview deleted before it was read) costs that event only: the page carries on to the images", { skip }, async () => {
  const { page, errors, close } = await open(app, "/");
  let replaced = 0;
  try {
    // Between the worker's event and its resolution the final images can replace the previews, and
    // the event then arrives as `data: null` with a nested NOT_FOUND: here every event with previews does.
    await page.routeWebSocket(/\/graphql$/, (ws) => {
      const server = ws.connectToServer();
      ws.onMessage((m) => server.send(m));
      server.onMessage((m) => {
        const msg = JSON.parse(String(m));
        if (msg.type === "next" && msg.payload?.data?.generationEvents?.previews?.length) {
          replaced++;
          msg.payload = { data: null, errors: [{ message: "the preview is gone", path: ["generationEvents", "previews", 0, "dataUrl"], extensions: { code: "NOT_FOUND" } }] };
        }
        ws.send(JSON.stringify(msg));
      });
    });
    await page.reload(); // the route applies to documents loaded after it
    await page.fill("#prompt", "a big purple circle at the bottom, white background");
    await page.fill("#count", "4");
    await page.getByRole("button", { name: "Generate" }).click();
    await finals(page, 4);
    assert.equal(await statusOf(page), "Done: 4 images.");
    assert.ok(replaced > 0, "some events were replaced");
    assert.deepEqual(errors, []);
  } finally {
    await close();
  }
});

test("a blank prompt is refused with a message; unknown and truncated words are flagged as you type, before anything is sent", { skip }, async () => {
  const before = await generations(db.url);
  const { page, errors, close } = await open(app, "/");
  try {
    await page.getByRole("button", { name: "Generate" }).click();
    await page.getByRole("alert").filter({ hasText: /blank prompt/ }).waitFor();
    await page.fill("#prompt", "   ");
    await page.press("#prompt", "Enter");
    await page.getByRole("alert").filter({ hasText: /blank prompt/ }).waitFor();
    await page.fill("#prompt", "a red zebra on a purple unicorn");
    const unknown = page.locator("[data-test=unknown-words] mark");
    await unknown.nth(1).waitFor();
    assert.deepEqual(await unknown.allInnerTexts(), ["zebra", "unicorn"]);
    const reds = maxTextLength + 8; // each word a token, and the start and end tokens: past the model's length
    await page.fill("#prompt", "red ".repeat(reds));
    await page.locator("[data-test=truncated-words]").waitFor();
    assert.match(await page.locator("#prompt-feedback").innerText(), new RegExp(`${reds + 2} of ${maxTextLength} tokens`));
    assert.equal(await page.locator("#prompt").getAttribute("aria-describedby"), "prompt-feedback");
    assert.equal(await generations(db.url), before, "nothing was created");
    assert.deepEqual(errors, []);
  } finally {
    await close();
  }
});

test("queued: position and ETA; Generate turns into Cancel; cancelled from the page, and from the API while the page watches", { skip }, async () => {
  const { page, errors, close } = await open(api, "/");
  try {
    await page.fill("#prompt", "a big blue square in the centre, white background");
    await page.fill("#count", "4");
    await page.getByRole("button", { name: "Generate" }).click();
    await page.waitForFunction(() => /^Queued: number 1 in line\.$/.test(document.querySelector("#status")?.textContent ?? ""));
    await page.locator(".eta").waitFor();
    assert.equal(await page.locator(".grid > li").count(), 4);
    await page.getByRole("button", { name: "Cancel" }).click();
    await page.waitForFunction(() => document.querySelector("#status")?.textContent === "Cancelled.");
    await page.getByRole("button", { name: "Generate" }).waitFor();
    const first = idOf(page);
    assert.equal((await sql(queueDb.url, `SELECT status FROM "Generation" WHERE id = $1`, [uuidOf(first)]))[0].status, "CANCELLED");

    await page.getByRole("button", { name: "Generate" }).click();
    await page.waitForURL((u) => u.pathname !== `/g/${encodeURIComponent(first)}`);
    await page.waitForFunction(() => (document.querySelector("#status")?.textContent ?? "").startsWith("Queued"));
    const second = idOf(page);
    const r = await gql(api, `mutation($id: ID!) { cancelGeneration(id: $id) { status } }`, { id: second });
    assert.equal(r.data.cancelGeneration.status, "CANCELLED");
    await page.waitForFunction(() => document.querySelector("#status")?.textContent === "Cancelled.");
    await page.getByRole("button", { name: "Generate" }).waitFor();
    assert.deepEqual(errors, []);
  } finally {
    await close();
  }
});

test("a failure is shown with its message (and announced), and Generate comes back", { skip }, async () => {
  const { page, errors, close } = await open(api, "/");
  try {
    await page.fill("#prompt", "a small orange circle on the right, black background");
    await page.fill("#count", "1");
    await page.getByRole("button", { name: "Generate" }).click();
    await page.waitForFunction(() => (document.querySelector("#status")?.textContent ?? "").startsWith("Queued"));
    // As a worker records a failure (the feed re-reads the row within 2 s, notification or not).
    await sql(queueDb.url, `UPDATE "Generation" SET status = 'FAILED', "errorCode" = 'WORKER_LOST', "errorMessage" = 'its worker was lost 3 times', "finishedAt" = now() WHERE id = $1`, [uuidOf(idOf(page))]);
    await page.waitForFunction(() => document.querySelector("#status")?.textContent === "Failed: its worker was lost 3 times", null, { timeout: 10_000 });
    assert.equal(await page.locator("#status").getAttribute("aria-live"), "polite");
    await page.getByRole("button", { name: "Generate" }).waitFor();
    assert.deepEqual(errors, []);
  } finally {
    await close();
  }
});

test("the server restarts mid-generation: the page says so, reconnects by itself and catches up to the result", { skip }, async () => {
  const restartDb = await createTestDatabase();
  const options = { role: "all" as const, databaseUrl: restartDb.url, dataDir: "unused", embeddedPort: 0, modelFolder: MODEL_DIR, provider: "cpu" as const, log: () => {} };
  let first: App | null = await startApp({ ...options, port: 0 });
  const port = (new URL(first.url!)).port;
  let second: App | null = null;
  const { page, close } = await open(first, "/");
  try {
    await page.fill("#prompt", "a big red circle in the centre, blue background");
    await page.fill("#seed", "21");
    await page.fill("#count", "9");
    await page.getByRole("button", { name: "Generate" }).click();
    await page.waitForFunction(() => Number(document.querySelector<HTMLProgressElement>("#progress")?.value) > 0, null, { timeout: 60_000 });
    await first.close();
    first = null;
    const [row] = await sql(restartDb.url, `SELECT status, "tokensDone" FROM "Generation"`);
    assert.notEqual(row.status, "COMPLETED", "the generation was still running when the server went away");
    await page.locator(".banner").filter({ hasText: "Connection to the server lost" }).waitFor({ timeout: 10_000 });
    assert.match(await statusOf(page), /Connection lost/);
    second = await startApp({ ...options, port: Number(port) });
    await finals(page, 9, 90_000);
    await page.waitForFunction(() => document.querySelector("#status")?.textContent === "Done: 9 images.");
    assert.equal(await page.locator(".banner").innerText(), "", "the banner is gone");
    const rows = await sql(restartDb.url, `SELECT status FROM "Generation"`);
    assert.deepEqual(rows, [{ status: "COMPLETED" }], "one generation, completed: reconnecting started nothing");
  } finally {
    await close();
    await first?.close();
    await second?.close();
    await restartDb.drop();
  }
});

test("a permalink opened cold shows the stored images and starts no job; a bad one says so", { skip }, async () => {
  assert.ok(finished, "the 3×3 test ran first");
  const before = await generations(db.url);
  const { page, errors, close } = await open(app, `/g/${encodeURIComponent(finished.id)}`);
  try {
    await finals(page, 9);
    assert.equal(await statusOf(page), "Done: 9 images.");
    assert.equal(await page.inputValue("#prompt"), finished.prompt);
    assert.equal(await page.inputValue("#seed"), "", "Generate would make new images");
    await page.getByRole("button", { name: `Run again (seed ${finished.seed})` }).waitFor();
    assert.equal(await generations(db.url), before, "no job was created");
    await page.goto(new URL("/g/bm9wZQ", app.url!).href);
    await page.locator("#status.error").waitFor();
    assert.equal(await generations(db.url), before);
    assert.deepEqual(errors, []);
  } finally {
    await close();
  }
});

test("run again: the same settings and seed give the same images; a new seed gives another generation", { skip }, async () => {
  assert.ok(finished);
  const { page, errors, close } = await open(app, `/g/${encodeURIComponent(finished.id)}`);
  try {
    await finals(page, 9);
    const originals = await page.locator(".grid img").evaluateAll((imgs) => imgs.map((i) => (i as HTMLImageElement).src));
    await page.getByRole("button", { name: `Run again (seed ${finished.seed})` }).click();
    await page.waitForURL((u) => !u.pathname.endsWith(encodeURIComponent(finished!.id)));
    await finals(page, 9);
    const again = await sql(db.url, `SELECT seed, count, "guidanceScale", "topK", "topP", temperature, "previewInterval" FROM "Generation" WHERE id = $1`, [uuidOf(idOf(page))]);
    const first = await sql(db.url, `SELECT seed, count, "guidanceScale", "topK", "topP", temperature, "previewInterval" FROM "Generation" WHERE id = $1`, [uuidOf(finished.id)]);
    assert.deepEqual(again, first);
    const bytes = async (src: string) => Buffer.from(await (await fetch(src)).arrayBuffer());
    const copies = await page.locator(".grid img").evaluateAll((imgs) => imgs.map((i) => (i as HTMLImageElement).src));
    assert.ok((await bytes(copies[0]!)).equals(await bytes(originals[0]!)), "same seed, same image");
    const copy = idOf(page);
    await page.getByRole("button", { name: "Run again, new seed" }).click();
    await page.waitForURL((u) => !u.pathname.endsWith(encodeURIComponent(copy)));
    await finals(page, 9);
    const [fresh] = await sql(db.url, `SELECT seed FROM "Generation" WHERE id = $1`, [uuidOf(idOf(page))]);
    assert.notEqual(fresh.seed, finished.seed);
    assert.deepEqual(errors, []);
  } finally {
    await close();
  }
});

test("the gallery lists past generations, loads more at the end of the list, and finds one by prompt", { skip }, async () => {
  for (let i = 0; i < 30; i++) {
    const g = await create(api, { prompt: `a small white circle on the right, black background ${i % 2 ? "" : "please"}`.trim(), seed: i });
    await gql(api, `mutation($id: ID!) { cancelGeneration(id: $id) { status } }`, { id: g.id });
  }
  await create(api, { prompt: "a big orange triangle at the top, green background", seed: 99 }).then((g) => gql(api, `mutation($id: ID!) { cancelGeneration(id: $id) { status } }`, { id: g.id }));
  const total = await generations(queueDb.url);
  const { page, errors, close } = await open(api, "/history");
  try {
    const cards = page.locator(".gallery .card");
    await cards.first().waitFor();
    assert.equal(await cards.count(), 24, "one page first");
    assert.match(await cards.first().innerText(), /orange triangle/);
    await page.locator(".gallery-note button").scrollIntoViewIfNeeded();
    await page.waitForFunction((n) => document.querySelectorAll(".gallery .card").length === n, total);
    await page.getByRole("searchbox", { name: "Search prompts" }).fill("TRIANGLE");
    await page.waitForFunction(() => document.querySelectorAll(".gallery .card").length === 1);
    assert.match(await cards.first().innerText(), /a big orange triangle at the top, green background/);
    assert.match(page.url(), /\/history\?q=TRIANGLE$/);
    await cards.first().getByRole("link").click();
    await page.waitForURL(/\/g\//);
    await page.waitForFunction(() => document.querySelector("#status")?.textContent === "Cancelled.");
    await page.goBack();
    await page.getByRole("searchbox", { name: "Search prompts" }).waitFor();
    await page.getByRole("searchbox", { name: "Search prompts" }).fill("unicorn");
    await page.getByText("Nothing matches “unicorn”.").waitFor();
    assert.deepEqual(errors, []);
  } finally {
    await close();
  }
});

test("keyboard only: type, submit, open an image larger, step through, close", { skip }, async () => {
  const { page, errors, close } = await open(app, "/");
  try {
    const focused = () => page.evaluate(() => document.activeElement?.id || document.activeElement?.className || document.activeElement?.tagName);
    const tabTo = async (pred: (f: string) => boolean, max = 30) => {
      for (let i = 0; i < max; i++) {
        await page.keyboard.press("Tab");
        if (pred(String(await focused()))) return;
      }
      throw new Error(`never reached by Tab (last: ${await focused()})`);
    };
    await tabTo((f) => f === "prompt");
    await page.keyboard.type("a big yellow square at the bottom, purple background");
    await tabTo((f) => f === "count");
    await page.keyboard.press("Control+A");
    await page.keyboard.type("4");
    await page.keyboard.press("Shift+Tab");
    await page.keyboard.press("Enter");
    await page.waitForURL(/\/g\//);
    await finals(page, 4);
    await tabTo((f) => f === "open");
    await page.keyboard.press("Enter");
    const dialog = page.getByRole("dialog", { name: /Image 1 of 4/ });
    await dialog.waitFor();
    assert.ok(await page.evaluate(() => !!document.activeElement?.closest("dialog")), "focus is in the dialog");
    await page.keyboard.press("ArrowRight");
    await page.getByRole("dialog", { name: /Image 2 of 4/ }).waitFor();
    await page.keyboard.press("Escape");
    await dialog.waitFor({ state: "detached" });
    assert.equal(await focused(), "open", "focus went back to the image");
    assert.deepEqual(errors, []);
  } finally {
    await close();
  }
});

test("downloads: PNG with the prompt, seed, model and settings in text chunks; WebP and JPEG at a chosen size", { skip }, async () => {
  assert.ok(finished);
  const { page, errors, close } = await open(app, `/g/${encodeURIComponent(finished.id)}`, { ...DESKTOP, acceptDownloads: true });
  try {
    await finals(page, 9);
    await page.locator(".grid .open").nth(2).click();
    await page.getByRole("dialog").waitFor();
    const save = async () => {
      const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download" }).click()]);
      return { name: download.suggestedFilename(), bytes: await readFile((await download.path())!) };
    };
    await page.getByLabel("Size").selectOption("512");
    const png = await save();
    assert.equal(png.name, `mosaic-${finished.seed + 2}-512.png`);
    assert.equal((await sharp(png.bytes).metadata()).width, 512);
    const text = readTextChunks(new Uint8Array(png.bytes));
    assert.match(text.parameters!, new RegExp(`^${finished.prompt}\\nSteps: ${sequenceLength}, .*Seed: ${finished.seed + 2}, Size: 512x512, Model: mosaic-shapes, .*Top-k: ${sampling.topK}, Top-p: ${sampling.topP}, Temperature: ${sampling.temperature}$`));
    assert.equal(JSON.parse(text.mosaic!).generationId, finished.id);
    await page.getByLabel("Format").selectOption("WEBP");
    await page.getByLabel("Size").selectOption("256");
    const webp = await save();
    assert.equal(webp.name, `mosaic-${finished.seed + 2}-256.webp`);
    assert.deepEqual([(await sharp(webp.bytes).metadata()).format, (await sharp(webp.bytes).metadata()).width], ["webp", 256]);
    await page.getByLabel("Format").selectOption("JPEG");
    await page.getByLabel("Size").selectOption("native");
    const jpeg = await save();
    assert.deepEqual([(await sharp(jpeg.bytes).metadata()).format, (await sharp(jpeg.bytes).metadata()).width], ["jpeg", 64]);
    assert.deepEqual(errors, []);
  } finally {
    await close();
  }
});

test("a server that needs keys: the page asks for one and keeps it in localStorage", { skip }, async () => {
  const keyed = await startTestApp(queueDb.url, "api", { access: { ...DEFAULT_ACCESS, auth: "required" } });
  const { key } = await createKey(keyed.db.prisma, "web-test");
  const { page, errors, close } = await open(keyed, "/");
  try {
    const dialog = page.getByRole("dialog", { name: "API key" });
    await dialog.waitFor();
    assert.match(await dialog.innerText(), /needs an API key/);
    await page.getByLabel("Key", { exact: true }).fill(key);
    await page.getByRole("button", { name: "Save key" }).click();
    await dialog.waitFor({ state: "detached" });
    await page.waitForFunction((k) => document.querySelector<HTMLInputElement>("#topk")?.value === k, String(sampling.topK));
    // The preview interval's hint is the server's default (one grid row), not a guess from the token count.
    assert.equal(await page.evaluate(() => document.querySelector("#preview-default")?.textContent), `default one per row (${gridWidth}); 0 = none`);
    assert.equal(await page.evaluate(() => localStorage.getItem("mosaic.apiKey")), key);
    await page.reload();
    await page.waitForFunction((k) => document.querySelector<HTMLInputElement>("#topk")?.value === k, String(sampling.topK));
    assert.equal(await dialog.count(), 0, "not asked again");
    await page.fill("#prompt", "a small red square on the left, white background");
    await page.getByRole("button", { name: "Generate" }).click();
    await page.waitForFunction(() => (document.querySelector("#status")?.textContent ?? "").startsWith("Queued"));
    const [row] = await sql(queueDb.url, `SELECT visibility FROM "Generation" WHERE prompt = $1`, ["a small red square on the left, white background"]);
    assert.equal(row.visibility, "PRIVATE", "made with the key");
    await page.getByRole("button", { name: "Cancel" }).click();
    await page.waitForFunction(() => document.querySelector("#status")?.textContent === "Cancelled.");
    // Before the key: the 401 answers themselves, which Chromium logs.
    assert.deepEqual(errors.filter((e) => !/status of 401/.test(e)), []);
  } finally {
    await close();
    await keyed.close();
  }
});

test("a phone: one column, the grid as wide as the screen, no sideways scrolling; dark mode follows the system", { skip }, async () => {
  assert.ok(finished);
  const { page, errors, close } = await open(app, `/g/${encodeURIComponent(finished.id)}`, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, colorScheme: "dark" });
  try {
    await finals(page, 9);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.equal(overflow, 0);
    const boxes = await page.locator(".grid > li").evaluateAll((lis) => lis.map((li) => li.getBoundingClientRect().toJSON() as DOMRect));
    for (const b of boxes) assert.ok(b.left >= 0 && b.right <= 390, JSON.stringify(b));
    assert.ok(boxes[2]!.right - boxes[0]!.left > 300, "the grid spans the screen");
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.equal(bg, "rgb(20, 23, 29)", "dark background");
    assert.deepEqual(errors, []);
  } finally {
    await close();
  }
});

test("axe-core finds no serious or critical accessibility problems (create, result, viewer, history, key dialog; light and dark)", { skip }, async () => {
  assert.ok(finished);
  const source = await readFile(require.resolve("axe-core/axe.min.js"), "utf8");
  const scan = async (page: Page, what: string) => {
    if (!(await page.evaluate(() => "axe" in window))) await page.evaluate(source);
    const result = await page.evaluate(() => (window as unknown as { axe: { run: (c: Document, o: object) => Promise<{ passes: unknown[]; violations: { id: string; impact: string; help: string; nodes: { target: string[] }[] }[] }> } }).axe.run(document, { resultTypes: ["violations"] }));
    assert.ok(result.passes.length > 10, `${what}: axe ran its rules (${result.passes.length} passed)`);
    const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
    assert.deepEqual(bad.map((v) => `${what}: ${v.id} (${v.impact}) ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`), []);
  };
  for (const colorScheme of ["light", "dark"] as const) {
    const { page, errors, close } = await open(app, "/", { ...DESKTOP, colorScheme });
    try {
      await page.fill("#prompt", "a red zebra");
      await page.locator("[data-test=unknown-words]").waitFor();
      await page.locator("details.advanced summary").click();
      await scan(page, `create (${colorScheme})`);
      await page.goto(new URL(`/g/${encodeURIComponent(finished.id)}`, app.url!).href);
      await finals(page, 9);
      await scan(page, `result (${colorScheme})`);
      await page.locator(".grid .open").first().click();
      await page.getByRole("dialog").waitFor();
      await scan(page, `viewer (${colorScheme})`);
      await page.keyboard.press("Escape");
      await page.getByRole("link", { name: "History" }).click();
      await page.locator(".gallery .card").first().waitFor();
      await scan(page, `history (${colorScheme})`);
      await page.getByRole("button", { name: "API key" }).click();
      await page.getByRole("dialog", { name: "API key" }).waitFor();
      await scan(page, `key dialog (${colorScheme})`);
      assert.deepEqual(errors, []);
    } finally {
      await close();
    }
  }
});

