/**
 * Create and watch: the prompt with vocabulary feedback, count, seed and the advanced settings on the
 * left; the grid filling in on the right. On `/g/<id>` the same view shows that generation (stored,
 * or live while it runs) without starting anything.
 */
import { useClient, useQuery } from "@urql/preact";
import { useEffect, useRef, useState } from "preact/hooks";
import type { Picture } from "./board.ts";
import { describeError, type Connection } from "./client.ts";
import type { GenerationFieldsFragment, ModelsQuery as ModelsResult, CreateGenerationInput } from "./gql/graphql.ts";
import { CancelGenerationMutation, CreateGenerationMutation, GenerationQuery, ModelsQuery, PromptCheckQuery } from "./operations.ts";
import { Link, navigate, permalink } from "./router.tsx";
import { Viewer } from "./Viewer.tsx";
import { isActive, useWatch, type WatchState } from "./watch.ts";

export type Model = ModelsResult["models"][number];
type Generation = GenerationFieldsFragment;

interface Form {
  prompt: string;
  count: string;
  seed: string;
  guidanceScale: string;
  topK: string;
  topP: string;
  temperature: string;
  previewInterval: string;
  visibility: "" | "PUBLIC" | "PRIVATE";
}

const EMPTY_FORM: Form = { prompt: "", count: "9", seed: "", guidanceScale: "", topK: "", topP: "", temperature: "", previewInterval: "", visibility: "" };

function useDebounced<T>(value: T, ms: number): T {
  const [v, setV] = useState(value);
  useEffect(() => {
    const t = setTimeout(() => setV(value), ms);
    return () => clearTimeout(t);
  }, [value, ms]);
  return v;
}

function useNow(active: boolean, ms = 250): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    if (!active) return;
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [active, ms]);
  return now;
}

const num = (s: string) => (s.trim() === "" ? undefined : Number(s));

/** What the model reads of the prompt, as it is typed. */
function PromptFeedback({ prompt }: { prompt: string }) {
  const text = useDebounced(prompt, 200);
  const [r] = useQuery({ query: PromptCheckQuery, variables: { prompt: text }, pause: text.trim() === "" });
  const c = text.trim() === "" ? null : r.data?.promptCheck;
  return (
    <div id="prompt-feedback" class="feedback">
      {!c ? (
        <p class="hint">Describe shapes, colours, sizes and positions.</p>
      ) : (
        <>
          {c.unknownWords.length > 0 && (
            <p class="warn" data-test="unknown-words">
              <span>Not in the model's vocabulary (it cannot draw these):</span>{" "}
              {c.unknownWords.map((w, i) => (
                <>
                  {i > 0 && ", "}
                  <mark class="unknown">{w}</mark>
                </>
              ))}
            </p>
          )}
          {c.truncatedWords.length > 0 && (
            <p class="warn" data-test="truncated-words">
              <span>Past the model's {c.maxTokens} tokens (never read):</span> <s class="truncated">{c.truncatedWords.join(" ")}</s>
            </p>
          )}
          {c.blank && <p class="warn">No words the model reads: it would draw anything.</p>}
          <p class="hint">
            {c.tokens} of {c.maxTokens} tokens
            {!c.blank && c.unknownWords.length === 0 && c.truncatedWords.length === 0 && " · every word known"}
          </p>
        </>
      )}
    </div>
  );
}

function Countdown({ end }: { end: number }) {
  const now = useNow(true, 250);
  const s = Math.max(0, Math.ceil((end - now) / 1000));
  return <span class="eta">{s > 0 ? `starts in about ${s} s` : "starting soon"}</span>;
}

function statusText(w: WatchState, g: Generation | null | undefined, connection: Connection): string {
  if (!g) return "";
  if (isActive(w.phase) && connection === "lost") return "Connection lost. Reconnecting…";
  switch (w.phase) {
    case "waiting": return "Connecting…";
    case "queued": return `Queued: number ${w.position ?? "?"} in line.`;
    case "running": return "Generating…";
    case "completed": return `Done: ${g.count} ${g.count === 1 ? "image" : "images"}.`;
    case "failed": return `Failed: ${w.message ?? "unknown error"}`;
    case "cancelled": return "Cancelled.";
    case "error": return w.message ?? "The stream broke.";
  }
}

const columns = (n: number) => (n <= 1 ? 1 : n <= 4 ? 2 : 3);

function altOf(p: Picture, i: number, g: Generation): string {
  const seed = p.seed ?? g.seed + i;
  const what = `“${g.prompt.trim() || "(blank prompt)"}”, seed ${seed}`;
  if (p.stage === "final") return `Image ${i + 1} of ${g.count}: ${what}`;
  const kind = p.stage === "mosaic" ? "token mosaic" : "preview";
  return `Image ${i + 1} of ${g.count}, ${kind} at ${p.tokens} of ${g.tokensTotal} tokens: ${what}`;
}

function Grid({ g, cells, count, onOpen }: { g: Generation | null | undefined; cells: (Picture | null)[]; count: number; onOpen: (i: number) => void }) {
  const n = g ? g.count : count;
  return (
    <ol class={`grid cols-${columns(n)}`} aria-label={g ? "Images" : "Images will appear here"}>
      {Array.from({ length: n }, (_, i) => {
        const p = g ? cells[i] : null;
        if (!p || !g) return <li class="cell empty" key={i} />;
        const img = <img src={p.url} alt={altOf(p, i, g)} data-stage={p.stage} data-tokens={p.tokens} width={256} height={256} />;
        return (
          <li class={`cell ${p.stage}`} key={i}>
            {p.stage === "final" ? (
              <button type="button" class="open" onClick={() => onOpen(i)} title="Open larger, download">
                {img}
              </button>
            ) : (
              img
            )}
          </li>
        );
      })}
    </ol>
  );
}

function Details({ g, onRunAgain, busy }: { g: Generation; onRunAgain: (sameSeed: boolean) => void; busy: boolean }) {
  const s = g.settings;
  return (
    <section class="details" aria-labelledby="details-heading">
      <h2 id="details-heading">This generation</h2>
      <dl>
        <dt>Prompt</dt>
        <dd>{g.prompt || "(blank)"}</dd>
        <dt>Seed</dt>
        <dd>
          {g.seed}
          {g.count > 1 && ` to ${g.seed + g.count - 1}`}
        </dd>
        <dt>Model</dt>
        <dd>{g.model}</dd>
        <dt>Settings</dt>
        <dd>
          guidance {s.guidanceScale}, top-k {s.topK}, top-p {s.topP}, temperature {s.temperature}
        </dd>
        <dt>Created</dt>
        <dd>
          <time dateTime={g.createdAt}>{new Date(g.createdAt).toLocaleString()}</time>
        </dd>
      </dl>
      <div class="actions">
        <button type="button" disabled={busy} onClick={() => onRunAgain(true)}>
          Run again (seed {g.seed})
        </button>
        <button type="button" disabled={busy} onClick={() => onRunAgain(false)}>
          Run again, new seed
        </button>
      </div>
      <p class="hint">
        <Link href={permalink(g.id)}>Permalink to this generation</Link>
      </p>
    </section>
  );
}

export function Studio({ id, connection, hasKey }: { id: string | null; connection: Connection; hasKey: boolean }) {
  const client = useClient();
  const [models] = useQuery({ query: ModelsQuery });
  const model = models.data?.models[0];
  const [gen] = useQuery({ query: GenerationQuery, variables: { id: id ?? "" }, pause: !id, requestPolicy: "cache-and-network" });
  const generation = id && gen.data?.generation?.id === id ? gen.data.generation : null;
  const notFound = !!id && !gen.fetching && !gen.error && gen.data && !gen.data.generation;
  const [form, setForm] = useState<Form>(EMPTY_FORM);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [viewing, setViewing] = useState<number | null>(null);
  const populated = useRef<string | null>(null);
  const promptRef = useRef<HTMLTextAreaElement>(null);
  const watch = useWatch(client, generation?.id ?? null, generation?.count ?? 0, generation?.tokensTotal ?? model?.tokensPerImage ?? 256);
  const active = !!generation && isActive(watch.phase);

  // The model's defaults fill the advanced settings the person has not set.
  useEffect(() => {
    if (!model) return;
    setForm((f) => ({
      ...f,
      guidanceScale: f.guidanceScale || String(model.defaultGuidanceScale),
      topK: f.topK || String(model.defaultTopK),
      topP: f.topP || String(model.defaultTopP),
      temperature: f.temperature || String(model.defaultTemperature),
    }));
  }, [model]);

  // A permalink opened cold fills the form with its prompt and settings (not its seed: Generate makes new images).
  useEffect(() => {
    if (!generation || populated.current === generation.id) return;
    populated.current = generation.id;
    const s = generation.settings;
    setForm((f) => ({
      ...f, prompt: generation.prompt, count: String(generation.count), guidanceScale: String(s.guidanceScale), topK: String(s.topK),
      topP: String(s.topP), temperature: String(s.temperature), previewInterval: String(generation.previewInterval),
    }));
  }, [generation]);

  useEffect(() => {
    document.title = generation ? `${generation.prompt.slice(0, 60) || "(blank)"} · Mosaic` : "Mosaic";
  }, [generation]);

  const set = (k: keyof Form) => (e: Event) => setForm((f) => ({ ...f, [k]: (e.currentTarget as HTMLInputElement).value }));

  async function create(input: CreateGenerationInput) {
    setBusy(true);
    setError(null);
    const r = await client.mutation(CreateGenerationMutation, { input }).toPromise();
    setBusy(false);
    if (r.error || !r.data) {
      setError(r.error ? describeError(r.error) : "No answer from the server.");
      return;
    }
    const g = r.data.createGeneration;
    populated.current = g.id;
    navigate(permalink(g.id));
  }

  async function submit(e: Event) {
    e.preventDefault();
    if (active) return;
    if (form.prompt.trim() === "") {
      setError("Type a prompt first: a blank prompt is not sent.");
      promptRef.current?.focus();
      return;
    }
    const input: CreateGenerationInput = {
      prompt: form.prompt, count: num(form.count) ?? 9, seed: num(form.seed), guidanceScale: num(form.guidanceScale), topK: num(form.topK),
      topP: num(form.topP), temperature: num(form.temperature), previewInterval: num(form.previewInterval),
      visibility: form.visibility || undefined,
    };
    await create(input);
  }

  async function cancel() {
    if (!generation) return;
    setError(null);
    const r = await client.mutation(CancelGenerationMutation, { id: generation.id }).toPromise();
    if (r.error) setError(describeError(r.error));
  }

  function runAgain(sameSeed: boolean) {
    if (!generation) return;
    const s = generation.settings;
    void create({
      prompt: generation.prompt, count: generation.count, seed: sameSeed ? generation.seed : undefined, guidanceScale: s.guidanceScale, topK: s.topK,
      topP: s.topP, temperature: s.temperature, previewInterval: generation.previewInterval, visibility: generation.visibility,
    });
  }

  function resetDefaults() {
    if (!model) return;
    setForm((f) => ({
      ...f, guidanceScale: String(model.defaultGuidanceScale), topK: String(model.defaultTopK), topP: String(model.defaultTopP),
      temperature: String(model.defaultTemperature), previewInterval: "",
    }));
  }

  const problem = notFound
    ? "No generation here: it may have been deleted, or be someone else's private one."
    : id && gen.error && !generation ? describeError(gen.error) : null;
  const status = problem ?? statusText(watch, generation, connection);
  const finals = watch.cells.filter((p): p is Picture => p?.stage === "final");
  const count = Math.min(9, Math.max(1, Number(form.count) || 9));
  const rowHint = model?.defaultPreviewInterval ?? 16;

  return (
    <div class="studio">
      <div class="side">
        <h1 id="page-heading" tabIndex={-1}>
          {generation ? "Generation" : "Create"}
        </h1>
        <form class="create" onSubmit={submit} noValidate aria-describedby={error ? "form-error" : undefined}>
          <label for="prompt">Prompt</label>
          <textarea
            id="prompt"
            ref={promptRef}
            rows={3}
            value={form.prompt}
            onInput={set("prompt")}
            onKeyDown={(e) => {
              if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
                e.preventDefault();
                (e.currentTarget.form as HTMLFormElement).requestSubmit();
              }
            }}
            placeholder="a big red circle in the centre, blue background"
            aria-describedby="prompt-feedback"
            autoComplete="off"
            spellcheck={false}
          />
          <PromptFeedback prompt={form.prompt} />
          <div class="row">
            <div class="field">
              <label for="count">Images</label>
              <input id="count" type="number" min={1} max={9} step={1} value={form.count} onInput={set("count")} />
            </div>
            <div class="field">
              <label for="seed">Seed</label>
              <input id="seed" type="number" min={0} max={2147483647} step={1} value={form.seed} onInput={set("seed")} placeholder="random" />
            </div>
          </div>
          <details class="advanced">
            <summary>Advanced settings</summary>
            <p class="hint">{model ? `Defaults of ${model.name} ${model.version}.` : "The model's defaults."}</p>
            <div class="row">
              <div class="field">
                <label for="guidance">Guidance scale</label>
                <input id="guidance" type="number" min={0} max={100} step="any" value={form.guidanceScale} onInput={set("guidanceScale")} aria-describedby="guidance-default" />
                <small id="guidance-default">default {model?.defaultGuidanceScale ?? "…"} (1 = off)</small>
              </div>
              <div class="field">
                <label for="topk">Top-k</label>
                <input id="topk" type="number" min={0} step={1} value={form.topK} onInput={set("topK")} aria-describedby="topk-default" />
                <small id="topk-default">default {model?.defaultTopK ?? "…"} (0 = all)</small>
              </div>
            </div>
            <div class="row">
              <div class="field">
                <label for="topp">Top-p</label>
                <input id="topp" type="number" min={0} max={1} step="any" value={form.topP} onInput={set("topP")} aria-describedby="topp-default" />
                <small id="topp-default">default {model?.defaultTopP ?? "…"}</small>
              </div>
              <div class="field">
                <label for="temperature">Temperature</label>
                <input id="temperature" type="number" min={0} max={100} step="any" value={form.temperature} onInput={set("temperature")} aria-describedby="temperature-default" />
                <small id="temperature-default">default {model?.defaultTemperature ?? "…"} (0 = greedy)</small>
              </div>
            </div>
            <div class="row">
              <div class="field">
                <label for="preview-interval">Preview every (tokens)</label>
                <input id="preview-interval" type="number" min={0} step={1} value={form.previewInterval} onInput={set("previewInterval")} placeholder={String(rowHint)} aria-describedby="preview-default" />
                <small id="preview-default">default one per row ({rowHint}); 0 = none</small>
              </div>
              {hasKey && (
                <div class="field">
                  <label for="visibility">Visibility</label>
                  <select id="visibility" value={form.visibility || "PRIVATE"} onChange={set("visibility")}>
                    <option value="PRIVATE">Private (your key)</option>
                    <option value="PUBLIC">Public</option>
                  </select>
                </div>
              )}
            </div>
            <button type="button" class="link" onClick={resetDefaults}>
              Reset to defaults
            </button>
          </details>
          {error && (
            <p id="form-error" class="error" role="alert">
              {error}
            </p>
          )}
          {active ? (
            <button type="button" class="primary cancel" onClick={cancel}>
              Cancel
            </button>
          ) : (
            <button type="submit" class="primary" disabled={busy}>
              Generate
            </button>
          )}
        </form>
      </div>
      <section class="result" aria-labelledby="result-heading">
        <h2 id="result-heading" class="sr-only">
          Result
        </h2>
        <div class="status-line">
          <p id="status" role="status" aria-live="polite" class={watch.phase === "failed" || watch.phase === "error" || problem ? "error" : ""}>
            {status}
          </p>
          {watch.phase === "queued" && watch.etaEnd !== null && connection !== "lost" && <Countdown end={watch.etaEnd} />}
        </div>
        <div class="progress-line">
          <label id="progress-label" for="progress">
            Progress
          </label>
          <progress id="progress" max={watch.tokensTotal || 256} value={generation ? watch.tokensDone : 0} aria-labelledby="progress-label" />
          <span class="tokens" aria-hidden="true">
            {generation ? `${watch.tokensDone} / ${watch.tokensTotal}` : "—"}
          </span>
        </div>
        <Grid g={generation} cells={watch.cells} count={count} onOpen={(i) => setViewing(i)} />
        {!generation && !id && <p class="hint center">Your images appear here: every token as it arrives, then the decoder's previews, then the final images.</p>}
      </section>
      {generation && !active && <Details g={generation} busy={busy} onRunAgain={runAgain} />}
      {generation && viewing !== null && finals.length > 0 && (
        <Viewer g={generation} model={model} pictures={watch.cells} start={viewing} onClose={() => setViewing(null)} />
      )}
    </div>
  );
}
