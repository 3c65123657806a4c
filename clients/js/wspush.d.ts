// Types of wspush.js, the wspush browser client (see README.md beside it).

/** The subprotocol that gives positions (selected only when the server keeps history). */
export declare const V1_PROTOCOL: "wspush.v1";
/** The subprotocol that carries a token (the token is offered right after it). */
export declare const BEARER_PROTOCOL: "wspush.bearer";
/** The close code of a resume the history could not serve (clients without positions). */
export declare const LOST_CLOSE_CODE: 4410;
/** Default first reconnect ceiling, ms. */
export declare const DEFAULT_INITIAL_DELAY: number;
/** Default cap of the reconnect wait, ms. */
export declare const DEFAULT_MAX_DELAY: number;

export interface BackoffOptions {
  /** The ceiling of the first reconnect's wait, ms (default 1000); doubles per failed attempt. */
  initialDelay?: number;
  /** The cap of the ceiling, ms (default 30000). */
  maxDelay?: number;
}

export interface WsPushClientOptions extends BackoffOptions {
  /**
   * Called before every connection attempt, the first and each reconnect: a fresh token
   * (a JWT whose `sub` is the id), or null for none. A throw or rejection counts as a
   * failed attempt.
   */
  token?: () => string | null | undefined | Promise<string | null | undefined>;
  /** The server's WebSocket path prefix (default "/websocket/"). */
  path?: string;
  /** The WebSocket class to use (default globalThis.WebSocket). */
  WebSocket?: typeof WebSocket;
}

/** The wait before reconnect attempt `attempt` (0-based): uniform in [0, min(maxDelay, initialDelay * 2^attempt)). */
export declare function backoffDelay(attempt: number, options?: BackoffOptions, random?: () => number): number;

export type WsPushState = "connecting" | "open" | "closed" | "stopped";

export interface WsPushStateEvent extends Event {
  readonly state: WsPushState;
  /** "connecting": failed attempts since the last open. */
  readonly attempt?: number;
  /** "open": the selected subprotocol ("wspush.v1": positions and resume). */
  readonly protocol?: string;
  /** "closed": the close code (1006 for a connection that failed or dropped; 0 when no socket was made) and reason. */
  readonly code?: number;
  readonly reason?: string;
  /** "closed": why no socket was made (the token callback threw, say). */
  readonly error?: unknown;
  /** "closed": the wait before the next attempt, ms. */
  readonly delay?: number;
}

export interface WsPushMessageEvent extends Event {
  /** A text message, or a binary one's bytes. */
  readonly data: string | Uint8Array;
  /** Its place in the id's history, "EPOCH:OFFSET", or null (history off; a broadcast). */
  readonly position: string | null;
}

export interface WsPushLostEvent extends Event {
  /** Where delivery continues from ("EPOCH:OFFSET"), or null when it starts afresh. */
  readonly position: string | null;
}

export interface WsPushEventMap {
  state: WsPushStateEvent;
  message: WsPushMessageEvent;
  /** History could not reach back to what was missed: reload the app's state. Delivery goes on. */
  lost: WsPushLostEvent;
}

export declare class WsPushClient extends EventTarget {
  /** Starts connecting `url` + path + `id` (after the caller's current synchronous code). */
  constructor(url: string, id: string, options?: WsPushClientOptions);
  readonly state: WsPushState;
  /** The last position seen, "EPOCH:OFFSET", or null. */
  readonly position: string | null;
  /** Closes the socket with 1000 and never reconnects. */
  stop(): void;
  addEventListener<K extends keyof WsPushEventMap>(
    type: K,
    listener: (event: WsPushEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof WsPushEventMap>(
    type: K,
    listener: (event: WsPushEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}
