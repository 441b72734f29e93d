// The outbox: order per conversation across passing errors and connection
// changes, and messages too large to send.
import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";
import { Server, serverPerFile, client, waitFor, token, resumed } from "./helpers.mjs";

// Token expiry is checked every second (min(interval, timeout) / 2).
const server = serverPerFile({ HUBBUB_HEARTBEAT_TIMEOUT: "2" });

const within = (promise, ms, what) =>
  Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms))]);

/** Stored order of a conversation's messages (REST history, ascending seq). */
async function storedBodies(user, conv) {
  const bodies = [];
  let after = 0;
  for (;;) {
    const page = await server.api(user, "GET", `/api/v1/conversations/${conv}/messages?after=${after}&limit=100`);
    bodies.push(...page.messages.map((m) => m.body));
    if (!page.has_more || !page.messages.length) return bodies;
    after = page.messages[page.messages.length - 1].seq;
  }
}

test("1,000 queued 4 KB messages over SSE: stored once each, in send order, without a reconnect", async () => {
  const alice = client(server, "oa", { transports: ["sse"], requestTimeoutMs: 30000 });
  const conv = await server.group("oa", ["ob"]);
  await resumed(alice);
  const drops = [];
  alice.on("state", (e) => e.state === "disconnected" && drops.push(e.code));
  const pad = "x".repeat(3990);
  const outs = [];
  for (let i = 0; i < 1000; i++) outs.push(alice.send(conv, `${i} ${pad}`));
  await within(Promise.all(outs.map((o) => o.sent)), 60000, "1000 acks");
  const want = outs.map((_, i) => `${i} ${pad}`);
  assert.deepEqual(await storedBodies("oa", conv), want, "stored out of send order");
  assert.deepEqual(drops, []);
});

// A WebSocket class whose first connection never passes message.send on
// (a server that does not answer); every socket made is pushed on `sockets`.
function swallowingFirst(sockets) {
  return class Swallowing extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      this.n = sockets.push(this);
    }
    send(data) {
      if (this.n === 1 && String(data).includes('"message.send"')) return;
      super.send(data);
    }
  };
}

test("a send lost on a replaced connection is sent again on the new one, and later sends wait for it", async () => {
  const sockets = [];
  const Swallowing = swallowingFirst(sockets);
  let calls = 0;
  const alice = client(server, "pa", {
    WebSocket: Swallowing,
    requestTimeoutMs: 20000,
    // A first token that expires soon (renewed after ~2 s), then long ones: one rotation.
    getToken: () => token("pa", { ttl: calls++ === 0 ? 3 : 3600 }),
  });
  const conv = await server.group("pa", ["pb"]);
  await resumed(alice);
  const m1 = alice.send(conv, "m1"); // on the wire of connection 1, unanswered
  await waitFor(() => sockets.length === 2 && alice.events.filter((e) => e.type === "resumed").length >= 2, 10000, "rotation");
  const m2 = alice.send(conv, "m2"); // must not overtake m1
  // Connection 1 closes when its token expires (4401): m1 goes again, on connection 2.
  await within(Promise.all([m1.sent, m2.sent]), 10000, "m1 and m2 acked");
  assert.ok(m1.message.seq < m2.message.seq, `m1 seq ${m1.message.seq}, m2 seq ${m2.message.seq}`);
  assert.deepEqual(await storedBodies("pa", conv), ["m1", "m2"]);
  assert.equal(sockets.length, 2);
});

test("close() also closes a replaced connection still waiting for replies", async () => {
  const sockets = [];
  const Swallowing = swallowingFirst(sockets);
  let calls = 0;
  const alice = client(server, "qa", {
    WebSocket: Swallowing,
    requestTimeoutMs: 20000,
    getToken: () => token("qa", { ttl: calls++ === 0 ? 5 : 3600 }),
  });
  const conv = await server.group("qa", ["qb"]);
  await resumed(alice);
  alice.send(conv, "never answered on 1");
  await waitFor(() => sockets.length === 2 && alice.events.filter((e) => e.type === "resumed").length >= 2, 10000, "rotation");
  assert.equal(sockets[0].readyState, WebSocket.OPEN, "the old connection drains");
  alice.close();
  assert.ok(sockets[0].readyState >= WebSocket.CLOSING, "the draining connection was left open");
  assert.ok(sockets[1].readyState >= WebSocket.CLOSING);
});

for (const transport of ["websocket", "sse"]) {
  test(`${transport}: a message over the frame limit fails too_large at once; the outbox goes on`, async () => {
    const alice = client(server, `ra-${transport}`, { transports: [transport] });
    const conv = await server.group(`ra-${transport}`, ["rb"]);
    await resumed(alice);
    const drops = [];
    alice.on("state", (e) => e.state === "disconnected" && drops.push(e.code));
    const statuses = [];
    alice.on("message.status", (e) => statuses.push(e.status));
    const huge = alice.send(conv, "x".repeat(1_100_000)); // over the server's hard ceiling (1 MiB)
    const big = alice.send(conv, "y".repeat(70_000)); // over max_frame_bytes (64 KiB)
    const after = alice.send(conv, "after");
    await assert.rejects(within(huge.sent, 5000, "huge refused"), (e) => e.code === "too_large");
    await assert.rejects(within(big.sent, 5000, "big refused"), (e) => e.code === "too_large");
    assert.equal((await within(after.sent, 5000, "after acked")).body, "after");
    assert.equal(huge.status, "failed");
    assert.equal(statuses.filter((s) => s === "failed").length, 2);
    assert.deepEqual(alice.pending(), []);
    assert.deepEqual(drops, [], "reconnected");
  });
}

test("SSE: posts are sized in UTF-8 bytes: 100 messages of 4,000 '漢' and 100 large requests, no reconnect", async () => {
  const alice = client(server, "sa", { transports: ["sse"], requestTimeoutMs: 20000 });
  const conv = await server.group("sa", ["sb"]);
  await resumed(alice);
  const drops = [];
  alice.on("state", (e) => e.state === "disconnected" && drops.push(e.code));
  const han = "漢".repeat(4000); // 4,000 characters, 12,000 bytes
  // 100 requests queued at once: 1.2 MB of frames, 0.4 M UTF-16 units.
  const edits = [];
  for (let i = 0; i < 100; i++) edits.push(alice.request({ type: "message.edit", message_id: `m_nope${i}`, body: han }));
  const results = await within(Promise.allSettled(edits), 20000, "100 replies");
  assert.deepEqual(new Set(results.map((r) => r.reason?.code)), new Set(["not_found"]));
  const outs = [];
  for (let i = 0; i < 100; i++) outs.push(alice.send(conv, han.slice(3) + i));
  await within(Promise.all(outs.map((o) => o.sent)), 30000, "100 acks");
  assert.deepEqual(await storedBodies("sa", conv), outs.map((_, i) => han.slice(3) + i));
  assert.deepEqual(drops, []);
});

test("SSE: a post the server refuses as too large (413) fails that frame only, without a reconnect", async () => {
  // max_frame_bytes of 4 MiB: the client lets a 1.5 MB frame through; a post of over 1 MiB is refused.
  const big = await new Server({ HUBBUB_MAX_FRAME_BYTES: String(4 << 20) }).start();
  try {
    const alice = client(big, "ta", { transports: ["sse"] });
    const conv = await big.group("ta", ["tb"]);
    await resumed(alice);
    const drops = [];
    alice.on("state", (e) => e.state === "disconnected" && drops.push(e.code));
    const before = alice.send(conv, "before");
    const request = alice.request({ type: "message.edit", message_id: "m_x", body: "z".repeat(1_500_000) });
    const afterIt = alice.send(conv, "after");
    await assert.rejects(within(request, 5000, "refused"), (e) => e.code === "too_large");
    await within(Promise.all([before.sent, afterIt.sent]), 5000, "the others acked");
    assert.deepEqual(drops, []);
    alice.close();
  } finally {
    await big.close();
  }
});
