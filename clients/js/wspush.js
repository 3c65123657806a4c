// wspush browser client: one id's messages, reconnecting with jittered exponential backoff,
// resuming exactly where it left off when the server keeps history. An ES module with no
// dependencies; types in wspush.d.ts; README.md beside it. The server serves this file at
// GET /client.js.
//
//   import { WsPushClient } from "http://127.0.0.1:8080/client.js";
//   const client = new WsPushClient("ws://127.0.0.1:8081", "456", { token: fetchToken });
//   client.addEventListener("message", (e) => show(e.data));   // string or Uint8Array
//   client.addEventListener("lost", () => reloadState());      // history could not reach back
//   client.addEventListener("state", (e) => showState(e.state));
//   client.stop();

/** The subprotocol that gives positions (selected only when the server keeps history). */
export const V1_PROTOCOL = "wspush.v1";
/** The subprotocol that carries a token (the token is offered right after it). */
export const BEARER_PROTOCOL = "wspush.bearer";
/** The close code of a resume the history could not serve (clients without positions). */
export const LOST_CLOSE_CODE = 4410;
/** Backoff defaults, in milliseconds. */
export const DEFAULT_INITIAL_DELAY = 1000;
export const DEFAULT_MAX_DELAY = 30000;

/**
 * The wait before reconnect attempt `attempt` (0 for the first after a connection ends):
 * "full jitter", uniform in [0, min(maxDelay, initialDelay * 2^attempt)). The randomness
 * is what spreads a fleet of clients that lost their server at the same instant.
 */
export function backoffDelay(attempt, options = {}, random = Math.random) {
  const initial = options.initialDelay ?? DEFAULT_INITIAL_DELAY;
  const max = options.maxDelay ?? DEFAULT_MAX_DELAY;
  const ceiling = Math.min(max, initial * 2 ** Math.min(attempt, 52));
  return Math.floor(random() * ceiling);
}

class WsPushEvent extends Event {
  constructor(type, fields) {
    super(type);
    Object.assign(this, fields);
  }
}

export class WsPushClient extends EventTarget {
  #url; #id; #options; #WebSocket;
  #ws = null;
  #timer = null;
  #attempt = 0;
  #position = null;
  #state = "connecting";

  constructor(url, id, options = {}) {
    super();
    this.#url = url.replace(/\/+$/, "");
    this.#id = id;
    this.#options = options;
    this.#WebSocket = options.WebSocket ?? globalThis.WebSocket;
    // Connect after the caller's synchronous code: its listeners see the first "connecting".
    queueMicrotask(() => this.#connect());
  }

  /** "connecting", "open", "closed" (a reconnect is scheduled) or "stopped". */
  get state() { return this.#state; }
  /** The last position seen, "EPOCH:OFFSET", or null (history off, or nothing yet). */
  get position() { return this.#position; }

  /** Closes the socket (1000) and never reconnects. */
  stop() {
    if (this.#state === "stopped") return;
    clearTimeout(this.#timer);
    const ws = this.#ws;
    this.#ws = null;
    if (ws) ws.close(1000, "stopped");
    this.#setState("stopped", {});
  }

  #setState(state, fields) {
    this.#state = state;
    this.dispatchEvent(new WsPushEvent("state", { state, ...fields }));
  }

  async #connect() {
    if (this.#state === "stopped") return;
    this.#setState("connecting", { attempt: this.#attempt });
    let token = null;
    if (this.#options.token) {
      try {
        token = await this.#options.token();
      } catch (error) {
        return this.#closed({ code: 0, reason: "", error });
      }
      if (this.#state === "stopped") return;
    }
    const since = this.#position ? "?since=" + this.#position : "";
    const url = this.#url + (this.#options.path ?? "/websocket/") + encodeURIComponent(this.#id) + since;
    // "wspush.bearer" is always offered, last or before the token: a server without history
    // selects it (with or without auth) where it cannot select wspush.v1, and a browser
    // fails a handshake in which it offered protocols and none was selected.
    const protocols = [V1_PROTOCOL, BEARER_PROTOCOL, ...(token ? [token] : [])];
    let ws;
    try {
      ws = new this.#WebSocket(url, protocols);
    } catch (error) {
      return this.#closed({ code: 0, reason: "", error });
    }
    this.#ws = ws;
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      if (this.#ws !== ws) return;
      this.#attempt = 0;
      this.#setState("open", { protocol: ws.protocol });
    };
    ws.onmessage = ({ data }) => {
      if (this.#ws === ws) this.#receive(ws, data);
    };
    const ended = (code, reason) => {
      if (this.#ws !== ws) return; // stopped, or ended already
      this.#ws = null;
      if (code === LOST_CLOSE_CODE) this.#lost(null);
      this.#closed({ code, reason });
    };
    ws.onclose = ({ code, reason }) => ended(code, reason);
    // Browsers follow an error with a close event; Node 20's WebSocket does not when the
    // connection fails (it stays CONNECTING), so an error ends the socket here. (Calling
    // close() on such a socket stalls Node 20's event loop for seconds: it is left alone.)
    ws.onerror = () => ended(1006, "");
  }

  #closed(fields) {
    if (this.#state === "stopped") return; // stop() called by a "lost" listener
    const delay = backoffDelay(this.#attempt++, this.#options);
    this.#setState("closed", { ...fields, delay });
    this.#timer = setTimeout(() => this.#connect(), delay);
  }

  #lost(position) {
    this.#position = position;
    this.dispatchEvent(new WsPushEvent("lost", { position }));
  }

  #receive(ws, data) {
    const binary = typeof data !== "string" && new Uint8Array(data);
    if (ws.protocol !== V1_PROTOCOL) return this.#deliver(binary || data, null); // history off
    if (!binary && data[0] === "!") { // "!pos E:O" | "!lost E:O"
      const [kind, position] = data.slice(1).split(" ");
      if (kind === "lost") this.#lost(position);
      else this.#position = position;
      return;
    }
    // "HEAD\nBODY", HEAD "EPOCH:OFFSET", or "-" for a message with no place in the history.
    const newline = binary ? binary.indexOf(10) : data.indexOf("\n");
    const head = binary ? new TextDecoder().decode(binary.subarray(0, newline)) : data.slice(0, newline);
    const position = head === "-" ? null : head;
    if (position) this.#position = position;
    this.#deliver(binary ? binary.subarray(newline + 1) : data.slice(newline + 1), position);
  }

  #deliver(data, position) {
    this.dispatchEvent(new WsPushEvent("message", { data, position }));
  }
}
