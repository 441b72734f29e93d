'use strict';
// Reference broadcast server for the fan-out benchmark.
//
//   node ws_broadcast_server.js PORT [HOST]
//
// Every message received from any client is sent to every connected client,
// the sender included, in the plain idiomatic `ws` way. No compression, no
// parsing, no per-client buffering policy. Prints "ready" once listening.

const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2]);
const host = process.argv[3] || '127.0.0.1';
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node ws_broadcast_server.js PORT [HOST]');
  process.exit(2);
}

const wss = new WebSocketServer({ host, port, perMessageDeflate: false });

wss.on('connection', (ws) => {
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    for (const c of wss.clients) {
      if (c.readyState === WebSocket.OPEN) c.send(data, { binary: isBinary });
    }
  });
});

wss.on('listening', () => {
  process.stdout.write('ready\n');
});

wss.on('error', (err) => {
  console.error(`ws_broadcast_server: ${err.message}`);
  process.exit(1);
});

function shutdown() {
  for (const c of wss.clients) c.terminate();
  wss.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
