// A thousand clients of clients/js/wspush.js (its real backoff: default delays, Math.random)
// on one server, for tests/js_client.rs, which kills and restarts the server:
//   node [--experimental-websocket] tests/js/storm.mjs WS_BASE COUNT   (the flag: Node 20 and 21)
// Prints one JSON line when all COUNT clients are open ({"open": COUNT}), then, once every
// client has lost its connection and opened a new one, one with what each did meanwhile:
// {"clients": [{"closed": MS, "attempts": [MS, ...], "reopened": MS}, ...]}, times in ms
// since the first client saw its connection end. Then stops every client and exits 0.
// Exits 1 with a message when that does not happen within LIMIT_MS.
import { WsPushClient } from "../../clients/js/wspush.js";

const [base, countText] = process.argv.slice(2);
const count = Number(countText);
const LIMIT_MS = 90000;

const limit = setTimeout(() => {
  const states = {};
  for (const c of clients) states[c.client.state] = (states[c.client.state] ?? 0) + 1;
  console.error(`storm.mjs: not done after ${LIMIT_MS} ms; clients by state: ${JSON.stringify(states)}`);
  process.exit(1);
}, LIMIT_MS);

let firstOpen = 0;
let reopened = 0;
let firstClose = null;
const clients = [];
for (let i = 0; i < count; i++) {
  const record = { client: new WsPushClient(base, `storm-${i}`), opened: false, closed: null, attempts: [], reopened: null };
  record.client.addEventListener("state", ({ state }) => {
    const now = performance.now();
    if (state === "open" && !record.opened) {
      record.opened = true;
      if (++firstOpen === count) console.log(JSON.stringify({ open: count }));
    } else if (state === "closed" && record.closed === null) {
      firstClose ??= now;
      record.closed = now;
    } else if (state === "connecting" && record.closed !== null && record.reopened === null) {
      record.attempts.push(now);
    } else if (state === "open" && record.closed !== null && record.reopened === null) {
      record.reopened = now;
      if (++reopened === count) finish();
    }
  });
  clients.push(record);
}

function finish() {
  clearTimeout(limit);
  const since = (t) => Math.round((t - firstClose) * 10) / 10;
  const report = clients.map((c) => ({ closed: since(c.closed), attempts: c.attempts.map(since), reopened: since(c.reopened) }));
  for (const c of clients) c.client.stop();
  process.stdout.write(JSON.stringify({ clients: report }) + "\n", () => process.exit(0));
}
