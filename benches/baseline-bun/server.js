// The original design again, on Bun: `Bun.serve` (whose WebSockets are uWebSockets) with its
// built-in topics, and Bun's built-in Redis client. Same interface as benches/baseline/server.js:
//
// - clients connect to ws://HOST:PORT/websocket/{id} and get a short welcome text;
// - every socket subscribes to the uWebSockets topic of its id (and to the broadcast topic);
// - to send, anyone publishes JSON {"KEY": id, "VALUE": text} on ONE Redis channel; every
//   node receives every message and publishes VALUE to the topic of KEY (KEY "*": everyone);
// - POST /socket/{id} (body: the text) publishes that JSON, POST /broadcast publishes KEY "*";
// - idle sockets are closed after 10 minutes; GET /stats counts the online connections.
//
// Like the Node.js baseline: no pings from the server, nothing dropped for slow readers
// (no backpressure limit), no compression. Unlike it:
// - the Redis subscription is made before the port listens, so a listening server is already
//   subscribed;
// - a POST is answered 200 once its PUBLISH is handed to the (connected) Redis client, not
//   when Redis confirms it: Bun.serve (uWebSockets) closes a keep-alive connection when a
//   pipelined request arrives while the response before it is still pending, and the load
//   generator pipelines its POSTs. 503 while the client is disconnected; a PUBLISH that
//   fails later is logged on stderr (the first, then every 1,000th).
//
// This is a baseline wspush is measured against (benches/README.md); it is not a product.
//
//   bun server.js --port 8080 --redis redis://127.0.0.1:6379 [--channel websocket]

import { RedisClient } from 'bun';

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const port = Number(option('port', '8080'));
const redisUrl = option('redis', 'redis://127.0.0.1:6379');
const channel = option('channel', 'websocket');
const IDLE_SECONDS = 10 * 60;

// Topics: "#" + id for one id, "*" for everyone (no id topic can be "*").
const EVERYONE = '*';
const topicOf = (id) => `#${id}`;

let online = 0;
let publishFailures = 0;
let server;

const publisher = new RedisClient(redisUrl);
const subscriber = new RedisClient(redisUrl);

function onMessage(payload) {
  let message;
  try {
    message = JSON.parse(payload);
  } catch (e) {
    return;
  }
  const value = String(message.VALUE);
  server.publish(message.KEY === '*' ? EVERYONE : topicOf(String(message.KEY)), value);
}

function reply(status, body) {
  return new Response(body, { status, headers: { 'content-type': 'application/json' } });
}

function decode(text) {
  try {
    return decodeURIComponent(text);
  } catch (e) {
    return null;
  }
}

function publishFailed(err) {
  if (publishFailures++ % 1000 === 0) {
    console.error(`publish to ${channel} failed (${publishFailures} so far): ${err.message}`);
  }
}

async function publish(key, req) {
  const value = await req.text();
  if (!publisher.connected) return reply(503, '{"error":"not connected to Redis"}');
  publisher.publish(channel, JSON.stringify({ KEY: key, VALUE: value })).catch(publishFailed);
  return reply(200, '{"ok":true}');
}

function fetch(req, srv) {
  // req.url is absolute: the path starts at the first "/" after "http://host".
  const url = req.url.slice(req.url.indexOf('/', req.url.indexOf('//') + 2));
  if (url.startsWith('/websocket/') && url.length > '/websocket/'.length) {
    const id = decode(url.slice('/websocket/'.length));
    if (id !== null && srv.upgrade(req, { data: { id } })) return undefined;
  }
  if (req.method === 'POST' && url === '/broadcast') return publish('*', req);
  if (req.method === 'POST' && url.startsWith('/socket/')) {
    const key = decode(url.slice('/socket/'.length));
    if (key !== null) return publish(key, req);
  }
  if (req.method === 'GET' && url === '/stats') {
    return reply(200, JSON.stringify({ connections: online }));
  }
  return reply(404, '{"error":"not found"}');
}

try {
  await publisher.connect();
  await subscriber.subscribe(channel, onMessage);
} catch (err) {
  console.error(`cannot subscribe to ${channel}: ${err.message}`);
  process.exit(1);
}

server = Bun.serve({
  hostname: '127.0.0.1',
  port,
  fetch,
  websocket: {
    idleTimeout: IDLE_SECONDS, // closed after 10 minutes without a message from the client
    sendPings: false,
    backpressureLimit: 0, // no limit: a slow reader's frames are kept, as ws does
    closeOnBackpressureLimit: false,
    perMessageDeflate: false,
    publishToSelf: false,
    open(ws) {
      online++;
      ws.subscribe(topicOf(ws.data.id));
      ws.subscribe(EVERYONE);
      ws.send(`welcome ${ws.data.id}`);
    },
    message() {},
    close() {
      online--;
    },
  },
});
console.log(`baseline-bun listening on ${port}, subscribed to ${channel}`);

for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
