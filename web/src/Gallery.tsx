/**
 * Past generations, newest first: pages of `generations` loaded as the end of the list comes into
 * view (or with the "More" button, for keyboards), filtered by text in the prompt.
 */
import { useQuery } from "@urql/preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { describeError } from "./client.ts";
import type { GenerationStatus } from "./gql/graphql.ts";
import { GalleryQuery } from "./operations.ts";
import { Link, permalink } from "./router.tsx";

export const PAGE_SIZE = 24;

const STATUS: Record<GenerationStatus, string> = { QUEUED: "Queued", RUNNING: "Running", COMPLETED: "Done", FAILED: "Failed", CANCELLED: "Cancelled" };

function Page({ after, search, last, onMore, onCount }: { after: string | null; search: string; last: boolean; onMore: (cursor: string) => void; onCount: (n: number) => void }) {
  const [r] = useQuery({ query: GalleryQuery, variables: { first: PAGE_SIZE, after, search: search || null }, requestPolicy: "cache-and-network" });
  const conn = r.data?.generations;
  const sentinel = useRef<HTMLLIElement>(null);
  const next = conn?.pageInfo.hasNextPage ? conn.pageInfo.endCursor : null;
  useEffect(() => {
    if (conn) onCount(conn.edges.length);
  }, [conn]);
  useEffect(() => {
    const el = sentinel.current;
    if (!el || !last || !next) return;
    const io = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) onMore(next);
    }, { rootMargin: "400px" });
    io.observe(el);
    return () => io.disconnect();
  }, [last, next]);
  if (r.error && !conn) {
    return (
      <li class="gallery-note error" role="alert">
        {describeError(r.error)}
      </li>
    );
  }
  if (!conn) return <li class="gallery-note">Loading…</li>;
  return (
    <>
      {conn.edges.map(({ node: g }) => (
        <li class="card" key={g.id}>
          <Link href={permalink(g.id)}>
            {g.status === "COMPLETED" && g.images.length > 0 ? (
              <span class={`thumbs cols-${g.images.length <= 1 ? 1 : g.images.length <= 4 ? 2 : 3}`}>
                {g.images.map((im) => (
                  <img key={im.id} src={im.url} alt="" width={64} height={64} loading="lazy" />
                ))}
              </span>
            ) : (
              <span class={`thumbs placeholder status-${g.status.toLowerCase()}`}>{STATUS[g.status]}</span>
            )}
            <span class="card-prompt">{g.prompt || "(blank prompt)"}</span>
            <span class="card-meta">
              {STATUS[g.status]} · {g.count} {g.count === 1 ? "image" : "images"} · seed {g.seed} · <time dateTime={g.createdAt}>{new Date(g.createdAt).toLocaleString()}</time>
            </span>
          </Link>
        </li>
      ))}
      {last && next && (
        <li class="gallery-note" ref={sentinel}>
          <button type="button" onClick={() => onMore(next)}>
            More
          </button>
        </li>
      )}
    </>
  );
}

export function Gallery() {
  const initial = new URLSearchParams(location.search).get("q") ?? "";
  const [text, setText] = useState(initial);
  const [search, setSearch] = useState(initial);
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const [counts, setCounts] = useState<Record<number, number>>({});
  useEffect(() => {
    const t = setTimeout(() => setSearch(text.trim()), 250);
    return () => clearTimeout(t);
  }, [text]);
  useEffect(() => {
    setCursors([null]);
    setCounts({});
    history.replaceState(null, "", search ? `/history?q=${encodeURIComponent(search)}` : "/history");
  }, [search]);
  useEffect(() => {
    document.title = "History · Mosaic";
  }, []);
  const shown = Object.values(counts).reduce((a, b) => a + b, 0);
  return (
    <div class="history">
      <h1 id="page-heading" tabIndex={-1}>
        History
      </h1>
      <form class="search" role="search" onSubmit={(e) => { e.preventDefault(); setSearch(text.trim()); }}>
        <label for="search">Search prompts</label>
        <input id="search" type="search" value={text} onInput={(e) => setText(e.currentTarget.value)} placeholder="e.g. triangle" autoComplete="off" />
      </form>
      <p class="hint" role="status" aria-live="polite">
        {counts[0] === undefined ? "" : shown === 0 ? (search ? `Nothing matches “${search}”.` : "Nothing generated yet.") : `${shown} ${shown === 1 ? "generation" : "generations"}${search ? ` matching “${search}”` : ""}.`}
      </p>
      <ul class="gallery" aria-label="Generations">
        {cursors.map((c, i) => (
          <Page
            key={`${search}:${c ?? ""}`}
            after={c}
            search={search}
            last={i === cursors.length - 1}
            onMore={(cursor) => setCursors((cs) => (cs.includes(cursor) ? cs : [...cs, cursor]))}
            onCount={(n) => setCounts((m) => ({ ...m, [i]: n }))}
          />
        ))}
      </ul>
    </div>
  );
}
