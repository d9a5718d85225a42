/**
 * One final image larger, in a modal dialog (Escape closes it; arrow keys or the buttons go to the
 * neighbours), with downloads in PNG, WebP or JPEG at a chosen size. A downloaded PNG carries the
 * prompt, seed, model and settings in text chunks, added here (png.ts): see web/README.md.
 */
import { useClient } from "@urql/preact";
import { useEffect, useRef, useState } from "preact/hooks";
import type { Picture } from "./board.ts";
import { describeError } from "./client.ts";
import type { GenerationFieldsFragment, ImageFormat, Upscale } from "./gql/graphql.ts";
import { ImageUrlQuery } from "./operations.ts";
import { addTextChunks, pngText } from "./png.ts";
import type { Model } from "./Studio.tsx";

const TYPES: Record<ImageFormat, [string, string]> = { PNG: ["image/png", "png"], WEBP: ["image/webp", "webp"], JPEG: ["image/jpeg", "jpg"] };

async function urlOf(client: ReturnType<typeof useClient>, id: string, format: ImageFormat, size: number | null, upscale: Upscale): Promise<string> {
  const r = await client.query(ImageUrlQuery, { id, format, size, upscale }, { requestPolicy: "network-only" }).toPromise();
  const node = r.data?.node;
  if (r.error) throw new Error(describeError(r.error));
  if (!node || !("url" in node)) throw new Error("The image is gone.");
  return node.url;
}

export function Viewer({ g, model, pictures, start, onClose }: {
  g: GenerationFieldsFragment; model: Model | undefined; pictures: (Picture | null)[]; start: number; onClose: () => void;
}) {
  const client = useClient();
  const dialog = useRef<HTMLDialogElement>(null);
  const [index, setIndex] = useState(start);
  const [format, setFormat] = useState<ImageFormat>("PNG");
  const [size, setSize] = useState("512");
  const [upscale, setUpscale] = useState<Upscale>("NEAREST");
  const [large, setLarge] = useState<string | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const finals = pictures.map((p, i) => [p, i] as const).filter(([p]) => p?.stage === "final");
  const pos = Math.max(0, finals.findIndex(([, i]) => i === index));
  const pic = pictures[index];
  const native = model?.imageWidth ?? 64;

  useEffect(() => {
    const d = dialog.current;
    if (d && !d.open) d.showModal();
    const opener = document.activeElement as HTMLElement | null;
    return () => opener?.focus?.();
  }, []);

  useEffect(() => {
    if (!pic?.id) return;
    let alive = true;
    setLarge(null);
    urlOf(client, pic.id, "PNG", Math.max(512, native), "NEAREST").then((u) => alive && setLarge(u), () => alive && setLarge(pic.url));
    return () => {
      alive = false;
    };
  }, [pic?.id]);

  const go = (d: number) => {
    const next = finals[(pos + d + finals.length) % finals.length];
    if (next) setIndex(next[1]);
  };

  async function download() {
    if (!pic?.id) return;
    setMessage("Preparing the download…");
    try {
      const px = size === "native" ? null : Number(size);
      const url = await urlOf(client, pic.id, format, px, upscale);
      const res = await fetch(url);
      if (!res.ok) throw new Error(`the server answered ${res.status}`);
      let bytes: Uint8Array = new Uint8Array(await res.arrayBuffer());
      const seed = pic.seed ?? g.seed + index;
      if (format === "PNG") {
        const s = g.settings;
        const side = px ?? native;
        bytes = addTextChunks(bytes, pngText({
          prompt: g.prompt, seed, model: g.model, modelVersion: model?.version, width: side, height: side, steps: g.tokensTotal,
          guidanceScale: s.guidanceScale, topK: s.topK, topP: s.topP, temperature: s.temperature, generationId: g.id, index,
        }));
      }
      const [type, ext] = TYPES[format];
      const href = URL.createObjectURL(new Blob([bytes as BlobPart], { type }));
      const a = document.createElement("a");
      a.href = href;
      a.download = `mosaic-${seed}${px ? `-${px}` : ""}.${ext}`;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(href), 30_000);
      setMessage(`Downloaded ${a.download}.`);
    } catch (e) {
      setMessage(`The download failed: ${(e as Error).message}`);
    }
  }

  if (!pic) return null;
  const seed = pic.seed ?? g.seed + index;
  return (
    <dialog
      ref={dialog}
      class="viewer"
      aria-labelledby="viewer-title"
      onClose={onClose}
      onKeyDown={(e) => {
        const t = e.target as HTMLElement;
        if (t.tagName === "SELECT") return;
        if (e.key === "ArrowRight") go(1);
        if (e.key === "ArrowLeft") go(-1);
      }}
    >
      <div class="viewer-head">
        <h2 id="viewer-title">
          Image {index + 1} of {g.count} · seed {seed}
        </h2>
        <button type="button" class="close" onClick={() => dialog.current?.close()} aria-label="Close">
          ×
        </button>
      </div>
      <img class="large" src={large ?? pic.url} alt={`Image ${index + 1} of ${g.count}: “${g.prompt.trim() || "(blank prompt)"}”, seed ${seed}`} width={512} height={512} />
      <div class="viewer-nav">
        <button type="button" onClick={() => go(-1)} disabled={finals.length < 2}>
          ← Previous
        </button>
        <button type="button" onClick={() => go(1)} disabled={finals.length < 2}>
          Next →
        </button>
      </div>
      <form
        class="download"
        onSubmit={(e) => {
          e.preventDefault();
          void download();
        }}
      >
        <div class="field">
          <label for="dl-format">Format</label>
          <select id="dl-format" value={format} onChange={(e) => setFormat(e.currentTarget.value as ImageFormat)}>
            <option value="PNG">PNG</option>
            <option value="WEBP">WebP</option>
            <option value="JPEG">JPEG</option>
          </select>
        </div>
        <div class="field">
          <label for="dl-size">Size</label>
          <select id="dl-size" value={size} onChange={(e) => setSize(e.currentTarget.value)}>
            <option value="native">{`as generated (${native} px)`}</option>
            {[256, 512, 1024].filter((n) => n !== native).map((n) => (
              <option value={String(n)}>{`${n} × ${n}`}</option>
            ))}
          </select>
        </div>
        <div class="field">
          <label for="dl-upscale">Enlarge</label>
          <select id="dl-upscale" value={upscale} onChange={(e) => setUpscale(e.currentTarget.value as Upscale)}>
            <option value="NEAREST">Blocky</option>
            <option value="SMOOTH">Smooth</option>
          </select>
        </div>
        <button type="submit" class="primary">
          Download
        </button>
      </form>
      <p class="hint">A PNG carries the prompt, seed, model and settings in its text chunks (“parameters”, as AUTOMATIC1111 writes them).</p>
      <p class="hint" role="status" aria-live="polite">
        {message}
      </p>
    </dialog>
  );
}
