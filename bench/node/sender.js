'use strict';
// Acked sends for bench/persistence.py (--client node): cheaper per frame than
// the Python client, so that the server, not the load, is what is measured.
//
//   node sender.js JOBS_FILE --window W --duration S
//
// JOBS_FILE has one line per connection: a ws:// URL (the token in its query),
// a space, and the conversation to send in. Each connection keeps W sends in
// flight (message.send, an 80-character body, a fresh client_msg_id each) and
// counts the acks; a refusal stops the run. Prints one JSON line:
// {"acks": n, "seconds": s, "cpu_seconds": c} (c: this process's CPU).

const fs = require('fs');
const { RawWebSocket } = require('./rawws');

const ACK = Buffer.from('"type":"ack"');
const ERROR = Buffer.from('"type":"error"');
const BODY = 'x'.repeat(80);

function parse(argv) {
  const opts = { file: null, window: 64, duration: 10 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--window') opts.window = Number(argv[++i]);
    else if (a === '--duration') opts.duration = Number(argv[++i]);
    else opts.file = a;
  }
  if (!opts.file) throw new Error('usage: node sender.js JOBS_FILE --window W --duration S');
  return opts;
}

function main() {
  const opts = parse(process.argv.slice(2));
  const jobs = fs
    .readFileSync(opts.file, 'utf8')
    .split('\n')
    .filter((l) => l)
    .map((l) => l.split(' '));
  let opened = 0;
  let acks = 0;
  let started = 0;
  let stopAt = 0;
  let cpuAtStart = null;
  const sockets = [];

  function finish() {
    const cpu = process.cpuUsage(cpuAtStart);
    const seconds = (Date.now() - started) / 1000;
    process.stdout.write(
      JSON.stringify({ acks, seconds, cpu_seconds: (cpu.user + cpu.system) / 1e6 }) + '\n',
    );
    for (const ws of sockets) ws.terminate();
    process.exit(0);
  }

  function run(ws, cid, tag) {
    let sent = 0;
    let inFlight = 0;
    const fill = () => {
      while (inFlight < opts.window && Date.now() < stopAt) {
        sent++;
        inFlight++;
        ws.send(
          `{"type":"message.send","id":${sent},"conversation_id":"${cid}",` +
            `"body":"${BODY}","client_msg_id":"${tag}-${sent}"}`,
        );
      }
    };
    ws.onmessage = (buf) => {
      if (buf.indexOf(ACK) >= 0) {
        inFlight--;
        acks++;
        fill();
      } else if (buf.indexOf(ERROR) >= 0) {
        process.stderr.write(`send refused: ${buf.toString()}\n`);
        process.exit(1);
      }
    };
    fill();
  }

  function go() {
    started = Date.now();
    stopAt = started + opts.duration * 1000;
    cpuAtStart = process.cpuUsage();
    sockets.forEach((ws, i) => run(ws, jobs[i][1], `n${i}`));
    setTimeout(finish, opts.duration * 1000 + 100);
  }

  jobs.forEach(([url]) => {
    const ws = new RawWebSocket(url);
    ws.onmessage = () => {
      // The hello: this connection is ready.
      ws.onmessage = () => {};
      if (++opened === jobs.length) go();
    };
    ws.onerror = (err) => {
      process.stderr.write(`connection failed: ${err}\n`);
      process.exit(1);
    };
    sockets.push(ws);
  });
}

main();
