/**
 * Real Chromium for the web app's tests and the screenshot script: Debian's package at
 * /usr/bin/chromium (scripts/test.sh installs it as root), driven by playwright-core (no browser
 * download). The app is built first when web/dist is missing or older than its sources.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { PACKAGE_ROOT } from "../../src/engine/settings.ts";

export const CHROMIUM = process.env.MOSAIC_CHROMIUM ?? "/usr/bin/chromium";
export const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"];

/** Why the browser tests cannot run here, or false. */
export const noBrowser: string | false = existsSync(CHROMIUM)
  ? false
  : `no Chromium at ${CHROMIUM}: apt-get install -y chromium (scripts/test.sh installs it when run as root; CI has it)`;

export function launch(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
}

function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== "gql") t = Math.max(t, newest(p));
    } else t = Math.max(t, statSync(p).mtimeMs);
  }
  return t;
}

/** Builds web/dist (node web/build.mjs) unless it is newer than web/src, web/index.html and schema.graphql. */
export function ensureWebBuilt(): void {
  const web = path.join(PACKAGE_ROOT, "web");
  const index = path.join(web, "dist", "index.html");
  const sources = Math.max(newest(path.join(web, "src")), newest(path.join(web, "public")), statSync(path.join(web, "index.html")).mtimeMs, statSync(path.join(PACKAGE_ROOT, "schema.graphql")).mtimeMs);
  if (existsSync(index) && statSync(index).mtimeMs >= sources) return;
  const r = spawnSync(process.execPath, [path.join(web, "build.mjs")], { cwd: PACKAGE_ROOT, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`the web app did not build:\n${r.stdout}\n${r.stderr}`);
}

/** Console errors and uncaught exceptions of a page, as they happen. */
export function consoleErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  return errors;
}
