'use strict';
// Holds many idle WebSocket connections for bench/connections.py.
//
//   node idle.js URLS_FILE [--local-address A] [--concurrency C]
//
// URLS_FILE has one ws:// URL per line (the token in its query). Opens them
// all from source address A, at most C handshakes at a time; a connection
// counts as open once its first frame (the server's hello) arrives. Prints
// JSON lines on stdout: {"progress": n} now and then, then
// {"ready": open, "failed": failed, "seconds": s} once every URL was tried.
// Then holds the connections (answering the server's pings) until stdin
// closes, and prints {"dropped": n}: connections the server closed meanwhile.

const fs = require('fs');
const { RawWebSocket } = require('./rawws');

function parse(argv) {
  const opts = { file: null, localAddress: undefined, concurrency: 200 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--local-address') opts.localAddress = argv[++i];
    else if (a === '--concurrency') opts.concurrency = Number(argv[++i]);
    else opts.file = a;
  }
  if (!opts.file) throw new Error('usage: node idle.js URLS_FILE [--local-address A]');
  return opts;
}

function say(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function main() {
  const opts = parse(process.argv.slice(2));
  const urls = fs.readFileSync(opts.file, 'utf8').split('\n').filter((l) => l);
  const started = Date.now();
  let next = 0;
  let inFlight = 0;
  let open = 0;
  let failed = 0;
  let ready = false;
  let dropped = 0;
  const sockets = [];

  function settle() {
    inFlight--;
    if ((open + failed) % 1000 === 0) say({ progress: open, failed });
    if (next < urls.length) start();
    else if (inFlight === 0 && !ready) {
      ready = true;
      say({ ready: open, failed, seconds: (Date.now() - started) / 1000 });
    }
  }

  function start() {
    const url = urls[next++];
    inFlight++;
    let settled = false;
    const ws = new RawWebSocket(url, { localAddress: opts.localAddress });
    ws.onmessage = () => {
      if (settled) return;
      settled = true;
      open++;
      settle();
    };
    ws.onerror = () => {};
    ws.onclose = () => {
      if (!settled) {
        settled = true;
        failed++;
        settle();
      } else if (ready) dropped++;
    };
    sockets.push(ws);
  }

  for (let i = 0; i < Math.min(opts.concurrency, urls.length); i++) start();
  process.stdin.resume();
  process.stdin.on('end', () => {
    say({ dropped });
    for (const ws of sockets) ws.terminate();
    process.exit(0);
  });
}

main();
