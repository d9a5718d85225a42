/** The graphql-ws subprotocol and the server's limits on it that the WebSocket fuzzer aims at. */

export const WS_PROTOCOL = "graphql-transport-ws";
/** The server's limit on one message (src/graphql/limits.ts MAX_BODY_BYTES). */
export const MAX_MESSAGE = 64 * 1024;
/** Operations one socket may run at once (MOSAIC_WS_MAX_SUBSCRIPTIONS' default). */
export const MAX_OPERATIONS = 20;
/** Close codes a client may see at all; any other is a failure. 4500 is the server's own error. */
export const EXPECTED_CLOSE_CODES = [1000, 1007, 1009, 4400, 4401, 4403, 4409, 4429] as const;
/** The server's token limit (src/graphql/limits.ts): a document over it is refused as it is parsed. */
export const MAX_TOKENS = 2000;
