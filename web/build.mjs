// Builds the web app into web/dist: typed operations from schema.graphql (graphql-codegen's client
// preset, into web/src/gql), then Vite. Run by `npm install` (postinstall) and `npm run build:web`;
// `--codegen-only` stops after the types (for `npm run dev:web`). Without the dev dependencies
// (a production-only install), or on a Node older than Vite's 20.19, it says so and exits 0: the
// server then serves its fallback page at `/`.
import { fileURLToPath } from "node:url";
import path from "node:path";

const web = path.dirname(fileURLToPath(import.meta.url));
const root = path.dirname(web);
const t0 = Date.now();

const [major, minor] = process.versions.node.split(".").map(Number);
if (major === 20 && minor < 19) {
  console.warn(`mosaic: the web app is not built: Vite needs Node 20.19 or newer (this is ${process.versions.node}); \`/\` serves the fallback page`);
  process.exit(0);
}

let codegen, vite;
try {
  codegen = await import("@graphql-codegen/cli");
  vite = await import("vite");
} catch (e) {
  if (e?.code !== "ERR_MODULE_NOT_FOUND") throw e;
  console.warn("mosaic: the web app is not built (its build tools are dev dependencies; run `npm install` with them); `/` serves the fallback page");
  process.exit(0);
}

process.chdir(root);
await codegen.generate(
  {
    schema: "schema.graphql",
    documents: ["web/src/**/*.{ts,tsx}", "!web/src/gql/**"],
    silent: true,
    errorsOnly: true,
    generates: {
      "web/src/gql/": {
        preset: "client",
        presetConfig: { fragmentMasking: false },
        config: { scalars: { DateTime: "string" }, enumsAsTypes: true, useTypeImports: true, skipTypename: false, avoidOptionals: false },
      },
    },
  },
  true,
);
if (process.argv.includes("--codegen-only")) process.exit(0);

const { default: config } = await import("./vite.config.mjs");
await vite.build({ ...config, configFile: false, logLevel: "warn" });
console.log(`mosaic: web app built into web/dist in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
