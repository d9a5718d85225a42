/**
 * The GraphQL client: urql over HTTP for queries and mutations, and over graphql-ws (same /graphql
 * path) for generationEvents. The API key, when the server needs one, lives in localStorage and goes
 * out as `Authorization: Bearer` (HTTP) and in connectionParams (graphql-ws). The socket retries for
 * ever with a capped backoff: a restarted server is found again, and graphql-ws re-subscribes, so the
 * server's late-subscriber replay catches the page up.
 */
import { Client, cacheExchange, fetchExchange, mapExchange, subscriptionExchange, type CombinedError } from "@urql/core";
import { createClient as createWsClient, type Client as WsClient } from "graphql-ws";

const KEY_STORAGE = "mosaic.apiKey";

export function storedKey(): string | null {
  try {
    return localStorage.getItem(KEY_STORAGE);
  } catch {
    return null;
  }
}

export function saveKey(key: string | null): void {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // private mode: the key lasts as long as the page
  }
}

/** idle: no socket (nothing watched); lost: it dropped and is being re-opened. */
export type Connection = "idle" | "connecting" | "connected" | "lost";

export interface Api {
  client: Client;
  ws: WsClient;
  connection(): Connection;
  onConnection(listener: (c: Connection) => void): () => void;
  dispose(): void;
}

/** graphql-ws closes with 4403 when the server refuses the key (or its absence). */
const FORBIDDEN = 4403;
const isClose = (e: unknown): e is { code: number } => typeof e === "object" && e !== null && "code" in e && typeof (e as { code: unknown }).code === "number";

export function errorCode(error: CombinedError | undefined): string | undefined {
  if (!error) return undefined;
  const coded = error.graphQLErrors.find((e) => typeof e.extensions?.code === "string");
  if (coded) return coded.extensions.code as string;
  const net = error.networkError as unknown;
  if (isClose(net) && net.code === FORBIDDEN) return "UNAUTHENTICATED";
  return error.networkError ? "NETWORK" : undefined;
}

/** A sentence for people, from an operation's error. */
export function describeError(error: CombinedError): string {
  const e = error.graphQLErrors[0];
  if (e) {
    const code = e.extensions?.code;
    if (code === "RATE_LIMITED" || code === "QUEUE_FULL") {
      const after = e.extensions?.retryAfterSeconds;
      return `${e.message}${typeof after === "number" ? ` Try again in ${Math.ceil(after)} s.` : ""}`;
    }
    if (code === "UNAUTHENTICATED") return "This server needs an API key.";
    return e.message;
  }
  if (errorCode(error) === "UNAUTHENTICATED") return "This server needs an API key.";
  return "The server cannot be reached. Check that Mosaic is running.";
}

export function createApi(onUnauthenticated: () => void): Api {
  let state: Connection = "idle";
  const listeners = new Set<(c: Connection) => void>();
  const set = (c: Connection) => {
    if (c === state) return;
    state = c;
    for (const l of listeners) l(c);
  };
  const key = () => storedKey();
  const ws = createWsClient({
    url: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/graphql`,
    connectionParams: () => {
      const k = key();
      return k ? { authorization: `Bearer ${k}` } : {};
    },
    retryAttempts: Number.POSITIVE_INFINITY,
    retryWait: (retries) => new Promise((r) => setTimeout(r, Math.min(250 * 2 ** retries, 2_000) + Math.random() * 250)),
    shouldRetry: (e) => {
      if (isClose(e) && e.code === FORBIDDEN) {
        onUnauthenticated();
        return false;
      }
      return true;
    },
    on: {
      connecting: () => set(state === "lost" ? "lost" : "connecting"),
      connected: () => set("connected"),
      // 1000: closed on purpose (nothing left to watch); anything else: the server or network went away.
      closed: (e) => set(isClose(e) && e.code === 1000 ? "idle" : "lost"),
    },
  });
  const client = new Client({
    url: "/graphql",
    preferGetMethod: false,
    requestPolicy: "cache-first",
    fetchOptions: () => {
      const k = key();
      return k ? { headers: { authorization: `Bearer ${k}` } } : {};
    },
    exchanges: [
      mapExchange({
        onError(error) {
          if (errorCode(error) === "UNAUTHENTICATED") onUnauthenticated();
        },
      }),
      cacheExchange,
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query ?? "" };
          return { subscribe: (sink) => ({ unsubscribe: ws.subscribe(input, sink) }) };
        },
      }),
    ],
  });
  return {
    client,
    ws,
    connection: () => state,
    onConnection(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    dispose() {
      listeners.clear();
      void ws.dispose();
    },
  };
}
