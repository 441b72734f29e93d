// Reconnect benchmark: 1,000 SDK clients (500 direct conversations with some
// traffic), the server SIGKILLed (or SIGTERMed: --signal=SIGTERM) and started
// again on the same port and data dir; prints the time from the restart until
// every client is resumed on the new process: per client, from its reconnect (the restarted server
// answering its first attempt) to the resume ack, and in total. 127.0.0.1 only.
//
//   node bench/reconnect.mjs [--clients=1000] [--signal=SIGKILL] [--max-backoff=10000] [--timeout=120]
import { performance } from "node:perf_hooks";
import WebSocket from "ws";
import { Server, token } from "../test/helpers.mjs";
import { connect } from "../dist/index.js";

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, "").split("=")));
const N = Number(args.clients ?? 1000);
const SIGNAL = args.signal ?? "SIGKILL";
const MAX_BACKOFF = Number(args["max-backoff"] ?? 10000);
const TIMEOUT_S = Number(args.timeout ?? 120);

const bail = setTimeout(() => {
  console.error(`gave up after ${TIMEOUT_S} s`);
  process.exit(2);
}, TIMEOUT_S * 1000);

const server = await new Server().start();
const users = Array.from({ length: N }, (_, i) => `u${i}`);
const clients = [];
let resumedAfterRestart = 0;
let restartAt = 0;
const perClient = new Array(N).fill(null);

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

try {
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const c = connect({
      url: server.url,
      getToken: () => token(users[i]),
      WebSocket,
      reconnect: { baseMs: 500, maxMs: MAX_BACKOFF },
      browserEvents: false,
    });
    c.index = i;
    c.attemptStart = 0;
    c.on("state", (e) => {
      if (e.state === "connecting") c.attemptStart = performance.now();
      if (e.state === "connected") c.helloAt = performance.now();
      // With SIGTERM the old process may take connections while it shuts down:
      // only the resume that lasts (on the new process) counts.
      if (e.state === "disconnected" && restartAt && perClient[i] !== null) {
        perClient[i] = null;
        resumedAfterRestart--;
      }
    });
    c.on("resumed", () => {
      if (!restartAt || perClient[i] !== null) return;
      const now = performance.now();
      perClient[i] = { fromRestart: now - restartAt, fromReconnect: now - c.attemptStart, fromHello: now - c.helloAt };
      resumedAfterRestart++;
    });
    clients.push(c);
  }
  await waitAll(() => clients.every((c) => c.state === "connected"), "initial connect");
  const t1 = performance.now();
  // 500 direct conversations, one message each way.
  const convs = [];
  for (let i = 0; i < N; i += 2) {
    const conv = await clients[i].openDirect(users[i + 1] ?? users[0]);
    convs.push(conv.id);
    await clients[i + 1]?.getConversation(conv.id);
  }
  await Promise.all(
    convs.flatMap((id, k) => [clients[2 * k].send(id, "hello").sent, clients[2 * k + 1]?.send(id, "hi").sent]),
  );
  console.log(`setup: ${N} clients connected in ${((t1 - t0) / 1000).toFixed(2)} s, ${convs.length} conversations, ${convs.length * 2} messages`);

  // Traffic while the server goes down: one more message per conversation, sent just before the kill.
  const inFlight = convs.map((id, k) => clients[2 * k].send(id, "in flight"));
  await server.kill(SIGNAL);
  restartAt = performance.now();
  await server.start();
  const upAt = performance.now();
  await waitAll(() => resumedAfterRestart === N, "every client resumed");
  const doneAt = performance.now();
  await Promise.all(inFlight.map((o) => o.sent));

  const fromReconnect = perClient.map((p) => p.fromReconnect).sort((a, b) => a - b);
  const fromHello = perClient.map((p) => p.fromHello).sort((a, b) => a - b);
  const fromRestart = perClient.map((p) => p.fromRestart).sort((a, b) => a - b);
  const fmt = (ms) => `${ms.toFixed(0)} ms`;
  console.log(`restart (${SIGNAL}) until the server answered /health: ${fmt(upAt - restartAt)}`);
  console.log(`per client, reconnect attempt -> resumed: p50 ${fmt(quantile(fromReconnect, 0.5))}, p99 ${fmt(quantile(fromReconnect, 0.99))}, max ${fmt(fromReconnect.at(-1))}`);
  console.log(`per client, hello -> resumed:             p50 ${fmt(quantile(fromHello, 0.5))}, p99 ${fmt(quantile(fromHello, 0.99))}, max ${fmt(fromHello.at(-1))}`);
  console.log(`per client, restart -> resumed:           p50 ${fmt(quantile(fromRestart, 0.5))}, p99 ${fmt(quantile(fromRestart, 0.99))}, max ${fmt(fromRestart.at(-1))}`);
  console.log(`total: all ${N} clients resumed ${fmt(doneAt - restartAt)} after the restart began (${fmt(doneAt - upAt)} after the server was up); max backoff ${MAX_BACKOFF} ms`);
} finally {
  for (const c of clients) c.close();
  await server.close();
  clearTimeout(bail);
}

async function waitAll(fn, what) {
  while (!fn()) {
    await new Promise((r) => setTimeout(r, 10));
  }
}
