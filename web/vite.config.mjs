// Vite for the web app: Preact's JSX through Vite's own transform (no plugin), the build into
// web/dist, and for `npm run dev:web` a dev server that hands /graphql (HTTP and graphql-ws),
// /images and /previews to a Mosaic on :4000 (MOSAIC_DEV_API to change it), Host kept: the server
// builds image links on it and accepts WebSockets from its own origin only.
import { fileURLToPath } from "node:url";

const api = process.env.MOSAIC_DEV_API ?? "http://127.0.0.1:4000";

/** @type {import("vite").InlineConfig} */
export default {
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: { outDir: "dist", emptyOutDir: true, target: "es2022", sourcemap: false, assetsInlineLimit: 0 },
  server: {
    proxy: {
      "/graphql": { target: api, ws: true },
      "/images": { target: api },
      "/previews": { target: api },
    },
  },
};
