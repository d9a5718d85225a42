/**
 * `npm run screenshot`: the real page at 1280×800 with a finished 3×3 grid, into docs/screenshot.png
 * (light; `-- --dark` for prefers-color-scheme: dark, `-- --out <file>` elsewhere). It starts Mosaic
 * on a fresh database (DATABASE_URL's server, else an embedded PostgreSQL) and drives Chromium.
 */
import path from "node:path";
import { PACKAGE_ROOT } from "../../src/engine/settings.ts";
import { createTestDatabase, startTestApp, stopEmbedded } from "../server-helpers.ts";
import { ensureWebBuilt, launch, noBrowser } from "./browser.ts";

const args = process.argv.slice(2);
const dark = args.includes("--dark");
const outArg = args.indexOf("--out");
const out = path.resolve(outArg >= 0 ? args[outArg + 1]! : path.join(PACKAGE_ROOT, "docs", dark ? "screenshot-dark.png" : "screenshot.png"));

if (noBrowser) {
  console.error(`screenshot: ${noBrowser}`);
  process.exit(1);
}
ensureWebBuilt();
const db = await createTestDatabase();
const app = await startTestApp(db.url, "all");
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 }, colorScheme: dark ? "dark" : "light" });
  await page.goto(new URL("/", app.url!).href);
  await page.fill("#prompt", "a big red circle in the centre, blue background");
  await page.fill("#seed", "7");
  await page.click("button[type=submit]");
  await page.waitForFunction(() => [...document.querySelectorAll<HTMLImageElement>(".grid img[data-stage=final]")].filter((i) => i.complete && i.naturalWidth > 0).length === 9, null, { timeout: 60_000 });
  await page.locator("#page-heading").evaluate((h) => (h as HTMLElement).blur());
  await page.screenshot({ path: out });
  console.log(`screenshot: ${path.relative(process.cwd(), out)}`);
} finally {
  await browser.close();
  await app.close();
  await db.drop();
  await stopEmbedded();
}
