/**
 * A seeded fuzzer for GraphQL over WebSocket (graphql-ws, subprotocol "graphql-transport-ws", on the
 * server's /graphql): the WebSocket half of scripts/fuzz.ts, and drawn from the same random streams,
 * documents and variables. A run is split into scripts, one per socket, each drawn in full from its own
 * stream (seed, script) before anything is sent, so a run is reproducible whatever the server answers
 * (what is drawn: scripts/fuzz/ws-scripts.ts). Every answer is checked for what docs/security.md
 * promises (the rules: scripts/fuzz/ws-checks.ts). A failure carries the script's index and the frames
 * that socket sent, so it can be replayed by hand.
 *
 *   npm run fuzz -- --requests 2000 --ws 500      (scripts/fuzz.ts runs the HTTP fuzzer, then this)
 *
 * The fuzzer is in scripts/fuzz/ (ws-*.ts), and re-exported here.
 */
export { EXPECTED_CLOSE_CODES, WS_PROTOCOL } from "./fuzz/ws-protocol.ts";
export { WsScriptMaker, type Frame, type WsScript } from "./fuzz/ws-scripts.ts";
export { checkMessage, frameCause, type SocketState, type WsRule } from "./fuzz/ws-checks.ts";
export { drawScripts, fuzzWebSocket, type WsFailure, type WsFuzzOptions, type WsFuzzSummary } from "./fuzz/ws-run.ts";
