// The original design, written the way most people would: Node.js `ws` + `ioredis`.
//
// - clients connect to ws://HOST:PORT/websocket/{id} and get a short welcome text;
// - every node keeps a map id -> set of sockets;
// - to send, anyone publishes JSON {"KEY": id, "VALUE": text} on ONE Redis channel; every
//   node receives every message and writes VALUE to its local sockets of KEY;
// - POST /socket/{id} (body: the text) publishes that JSON, from any node;
// - idle sockets are closed after 10 minutes; GET /stats counts the online connections.
//
// The original has no broadcast; the obvious extension is here so the broadcast scenario can
// run against it: KEY "*" goes to every socket (POST /broadcast publishes it).
//
// This is the baseline wspush is measured against (benches/README.md); it is not a product.
//
//   node server.js --port 8080 --redis redis://127.0.0.1:6379 [--channel websocket]
'use strict';

const http = require('http');
const { WebSocketServer } = require('ws');
const Redis = require('ioredis');

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const port = Number(option('port', '8080'));
const redisUrl = option('redis', 'redis://127.0.0.1:6379');
const channel = option('channel', 'websocket');
const IDLE_MS = 10 * 60 * 1000;

const sockets = new Map(); // id -> Set<WebSocket>
let online = 0;

const publisher = new Redis(redisUrl);
const subscriber = new Redis(redisUrl);

subscriber.subscribe(channel, (err) => {
  if (err) {
    console.error(`cannot subscribe to ${channel}: ${err.message}`);
    process.exit(1);
  }
  console.log(`baseline listening on ${port}, subscribed to ${channel}`);
});

subscriber.on('message', (_channel, payload) => {
  let message;
  try {
    message = JSON.parse(payload);
  } catch (e) {
    return;
  }
  const value = String(message.VALUE);
  if (message.KEY === '*') {
    for (const set of sockets.values()) for (const ws of set) ws.send(value);
    return;
  }
  const set = sockets.get(String(message.KEY));
  if (set) for (const ws of set) ws.send(value);
});

function reply(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function readBody(req, done) {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => done(Buffer.concat(chunks).toString('utf8')));
}

const server = http.createServer((req, res) => {
  const url = req.url || '';
  if (req.method === 'POST' && (url.startsWith('/socket/') || url === '/broadcast')) {
    const key = url === '/broadcast' ? '*' : decodeURIComponent(url.slice('/socket/'.length));
    readBody(req, (value) => {
      publisher.publish(channel, JSON.stringify({ KEY: key, VALUE: value })).then(
        () => reply(res, 200, '{"ok":true}'),
        (err) => reply(res, 503, JSON.stringify({ error: err.message })),
      );
    });
    return;
  }
  if (req.method === 'GET' && url === '/stats') {
    reply(res, 200, JSON.stringify({ connections: online }));
    return;
  }
  reply(res, 404, '{"error":"not found"}');
});

const wss = new WebSocketServer({ noServer: true });

server.on('upgrade', (req, socket, head) => {
  const url = req.url || '';
  if (!url.startsWith('/websocket/') || url.length === '/websocket/'.length) {
    socket.destroy();
    return;
  }
  const id = decodeURIComponent(url.slice('/websocket/'.length));
  wss.handleUpgrade(req, socket, head, (ws) => {
    let set = sockets.get(id);
    if (!set) sockets.set(id, (set = new Set()));
    set.add(ws);
    online++;
    ws.lastSeen = Date.now();
    ws.on('message', () => (ws.lastSeen = Date.now()));
    ws.on('pong', () => (ws.lastSeen = Date.now()));
    ws.on('close', () => {
      online--;
      set.delete(ws);
      if (set.size === 0 && sockets.get(id) === set) sockets.delete(id);
    });
    ws.send(`welcome ${id}`);
  });
});

setInterval(() => {
  const cutoff = Date.now() - IDLE_MS;
  for (const set of sockets.values()) for (const ws of set) if (ws.lastSeen < cutoff) ws.terminate();
}, 30_000).unref();

server.listen(port, '127.0.0.1');
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
