// Prints the node_modules folders that a run needs, relative to the current directory (the project
// root): the named packages, plus every package that the named entry files import statically
// (found by esbuild, so a new import in the engine is packed without editing a list), each with its
// dependencies and optionalDependencies, followed recursively and resolved as Node resolves them.
// Packages loaded through createRequire() are not seen by esbuild: name those.
//   node bench/gpu/closure.mjs [PACKAGE | ENTRY.ts]...
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";

const root = process.cwd();
const found = new Set();

/** "pg", "@scope/name" or "pkg/sub/path" -> the package name. */
function packageOf(specifier) {
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
}

async function importedBy(entries) {
  if (!entries.length) return [];
  const { build } = await import("esbuild");
  const result = await build({
    entryPoints: entries, bundle: true, write: false, metafile: true, platform: "node", format: "esm",
    packages: "external", outdir: "unused", logLevel: "error",
  });
  // The GPU machine gets the tracked tree: a git-ignored file the entries import (the Prisma client
  // generated at install, a build output) is not there, and the run would fail at its first import.
  const sources = Object.keys(result.metafile.inputs).filter((f) => !f.includes("node_modules/"));
  const ignored = gitIgnored(sources);
  if (ignored.length) throw new Error(`the entries import files git ignores, which the GPU machine does not get: ${ignored.join(", ")}`);
  const names = new Set();
  for (const input of Object.values(result.metafile.inputs)) {
    // Only packages: esbuild also lists as external a relative import whose bindings are all types
    // (the generated Prisma client's `import { type PrismaClient } from "./class.ts"`).
    for (const i of input.imports) if (i.external && !i.path.startsWith("node:") && !/^[./]/.test(i.path)) names.add(packageOf(i.path));
  }
  return [...names];
}

/** The files among `files` that git ignores (none outside a git checkout). */
function gitIgnored(files) {
  try {
    return execFileSync("git", ["check-ignore", "--stdin"], { input: files.join("\n"), encoding: "utf8" }).split("\n").filter(Boolean);
  } catch (e) {
    // Exit status 1: none is ignored; 128: not a git checkout.
    if (e.status === 1 || e.status === 128) return [];
    throw e;
  }
}

function locate(name, fromDir) {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", name);
    if (existsSync(join(candidate, "package.json"))) return candidate;
    if (dir === root || dir === dirname(dir)) return null;
  }
}

function visit(name, fromDir, optional) {
  const dir = locate(name, fromDir);
  if (!dir) {
    // An optional dependency for another platform is simply not installed; anything else is an error.
    if (!optional) throw new Error(`${name} (needed from ${relative(root, fromDir) || "."}) is not installed: run npm ci first`);
    return;
  }
  if (found.has(dir)) return;
  found.add(dir);
  const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  for (const dep of Object.keys(pkg.dependencies ?? {})) visit(dep, dir, false);
  for (const dep of Object.keys(pkg.optionalDependencies ?? {})) visit(dep, dir, true);
}

const args = process.argv.slice(2);
const isEntry = (a) => /\.(ts|mts|js|mjs)$/.test(a) && existsSync(a);
const names = [...args.filter((a) => !isEntry(a)), ...(await importedBy(args.filter(isEntry)))];
for (const name of names) visit(name, root, false);
// A folder inside another one found (a nested node_modules) is packed with it already.
const dirs = [...found].sort();
for (const dir of dirs) if (!dirs.some((d) => dir.startsWith(d + "/"))) console.log(relative(root, dir));
