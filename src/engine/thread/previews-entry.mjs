// The preview thread's entry: TypeScript through tsx, as the CLI (bin/mosaic.js) runs it.
import { register } from "tsx/esm/api";

register();
await import("./previews.ts");
