/** The Mosaic web app: create and watch, permalinks, history; see web/README.md. */
import { render } from "preact";
import { Provider } from "@urql/preact";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { createApi, saveKey, storedKey, type Connection } from "./client.ts";
import { Gallery } from "./Gallery.tsx";
import { Link, useRoute } from "./router.tsx";
import { Studio } from "./Studio.tsx";
import "./styles.css";

function KeyDialog({ refused, onSave, onClose }: { refused: boolean; onSave: (key: string | null) => void; onClose: () => void }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [value, setValue] = useState("");
  useEffect(() => {
    const d = dialog.current;
    if (d && !d.open) d.showModal();
  }, []);
  const had = !!storedKey();
  return (
    <dialog ref={dialog} class="key-dialog" aria-labelledby="key-title" onClose={onClose}>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (value.trim()) onSave(value.trim());
        }}
      >
        <h2 id="key-title">API key</h2>
        <p>
          {refused
            ? had
              ? "The server refused the saved key: it may have been revoked. Enter another one."
              : "This server needs an API key. Ask its operator for one (mosaic keys create <name>)."
            : "Generations made with a key belong to it; a key also lets you make private ones."}
        </p>
        <label for="api-key">Key</label>
        <input id="api-key" type="password" value={value} onInput={(e) => setValue(e.currentTarget.value)} autoComplete="off" spellcheck={false} required />
        <p class="hint">Kept in this browser's local storage, sent only to this server.</p>
        <div class="actions">
          <button type="submit" class="primary">
            Save key
          </button>
          {had && (
            <button type="button" onClick={() => onSave(null)}>
              Forget the key
            </button>
          )}
          <button type="button" onClick={() => dialog.current?.close()}>
            Close
          </button>
        </div>
      </form>
    </dialog>
  );
}

function App() {
  const route = useRoute();
  const [keyVersion, setKeyVersion] = useState(0);
  const [keyDialog, setKeyDialog] = useState<null | "asked" | "refused">(null);
  const [connection, setConnection] = useState<Connection>("idle");
  const api = useMemo(() => createApi(() => setKeyDialog((d) => d ?? "refused")), [keyVersion]);
  useEffect(() => {
    setConnection(api.connection());
    const off = api.onConnection(setConnection);
    return () => {
      off();
      api.dispose();
    };
  }, [api]);

  // A new page: focus its heading, so keyboards and screen readers start there.
  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    document.getElementById("page-heading")?.focus();
  }, [route.name, route.name === "generation" ? route.id : ""]);

  const hasKey = !!storedKey();
  return (
    <Provider value={api.client} key={keyVersion}>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <Link href="/" class="brand">
          <img src="/favicon.svg" alt="" width={24} height={24} />
          Mosaic
        </Link>
        <nav aria-label="Main">
          <Link href="/">Create</Link>
          <Link href="/history">History</Link>
          <a href="/graphql" class="wide-only">
            API
          </a>
        </nav>
        <button type="button" class="key-button" onClick={() => setKeyDialog("asked")}>
          {hasKey ? "API key ✓" : "API key"}
        </button>
      </header>
      <div class="banner" role="status" aria-live="polite">
        {connection === "lost" ? "Connection to the server lost. Reconnecting…" : ""}
      </div>
      <main id="main">
        {route.name === "history" ? (
          <Gallery />
        ) : route.name === "missing" ? (
          <div class="missing">
            <h1 id="page-heading" tabIndex={-1}>
              Not found
            </h1>
            <p>
              Nothing is here. <Link href="/">Create something</Link>.
            </p>
          </div>
        ) : (
          <Studio id={route.name === "generation" ? route.id : null} connection={connection} hasKey={hasKey} />
        )}
      </main>
      {keyDialog && (
        <KeyDialog
          refused={keyDialog === "refused"}
          onClose={() => setKeyDialog(null)}
          onSave={(k) => {
            saveKey(k);
            setKeyDialog(null);
            setKeyVersion((v) => v + 1);
          }}
        />
      )}
    </Provider>
  );
}

render(<App />, document.getElementById("app")!);
