import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";
import { serverPerFile, client, waitFor, assertOrdered, uniqueBodies, resumed } from "./helpers.mjs";

const server = serverPerFile({}, async (started) => {
  const probe = await fetch(started.url + "/sse");
  if (probe.status === 404) throw new Error("this hubbub has no /sse (HTTP fallback transport)");
});

/** A WebSocket class whose connections go to a wrong path (refused) while `state.refuse`. */
function refusingWebSocket(state) {
  return class extends WebSocket {
    constructor(url, protocols) {
      state.attempts = (state.attempts ?? 0) + 1;
      super(state.refuse ? url.replace("/ws?", "/nowhere?") : url, protocols);
    }
  };
}

test("a client forced to SSE chats with a WebSocket client", async () => {
  const alice = client(server, "alice", { transports: ["sse"] });
  const bob = client(server, "bob");
  const conv = await server.group("alice", ["bob"]);
  await Promise.all([resumed(alice), resumed(bob)]);
  assert.equal(alice.transport, "sse");
  assert.equal(bob.transport, "websocket");
  await alice.getConversation(conv);
  await bob.getConversation(conv);
  const statuses = [];
  alice.on("message.status", (e) => statuses.push(e.status));
  const outs = [];
  for (let i = 0; i < 20; i++) outs.push((i % 2 ? bob : alice).send(conv, `m${i}`));
  await Promise.all(outs.map((o) => o.sent));
  const want = outs.map((o) => o.message).sort((a, b) => a.seq - b.seq).map((m) => m.body);
  await waitFor(() => alice.bodies(conv).length === 20 && bob.bodies(conv).length === 20, 10000, "20 each");
  assert.deepEqual(uniqueBodies(assert, alice, conv), want);
  assert.deepEqual(uniqueBodies(assert, bob, conv), want);
  await waitFor(() => statuses.includes("delivered"), 5000, "delivered over SSE");
  await bob.markRead(conv);
  await waitFor(() => statuses.includes("read"), 5000, "read over SSE");
  // typing crosses transports
  const typing = bob.once("typing", (e) => e.user_id === "alice" && e.state === "start", 5000);
  alice.typing(conv).keystroke();
  await typing;
  // the SSE session survives a server restart too
  const back = alice.once("resumed", undefined, 15000);
  await server.restart("SIGKILL");
  await back;
  assert.equal(alice.transport, "sse");
  const after = await bob.send(conv, "after restart").sent;
  await waitFor(() => alice.bodies(conv).includes(after.body), 10000);
  assertOrdered(assert, alice);
});

test("WebSocket refused: the client falls back to SSE on its own, and goes back to WebSocket later", async () => {
  const state = { refuse: true };
  const carol = client(server, "carol", { WebSocket: refusingWebSocket(state), webSocketRetryMs: 1500 });
  const dave = client(server, "dave");
  const conv = await server.group("carol", ["dave"]);
  await resumed(carol, 15000);
  assert.equal(carol.transport, "sse");
  assert.ok(state.attempts >= 2);
  await resumed(dave);
  await carol.getConversation(conv);
  await dave.getConversation(conv);
  const sent = [];
  for (let i = 0; i < 10; i++) sent.push(carol.send(conv, `sse ${i}`));
  await Promise.all(sent.map((o) => o.sent));

  // WebSocket works again: after webSocketRetryMs the client moves back, seamlessly.
  state.refuse = false;
  const drops = [];
  carol.on("state", (e) => e.state === "disconnected" && drops.push(e));
  const upgraded = carol.once("resumed", (e) => e.transport === "websocket", 10000);
  const during = [];
  for (let i = 0; i < 20; i++) {
    during.push(dave.send(conv, `during ${i}`));
    await new Promise((r) => setTimeout(r, 100));
  }
  await upgraded;
  assert.equal(carol.transport, "websocket");
  assert.deepEqual(drops, []);
  await Promise.all(during.map((o) => o.sent));
  const want = [...sent, ...during].map((o) => o.message).sort((a, b) => a.seq - b.seq).map((m) => m.body);
  await waitFor(() => carol.bodies(conv).length >= want.length, 10000, "all messages");
  assert.deepEqual(uniqueBodies(assert, carol, conv), want);
  assertOrdered(assert, carol);
});

test("an injected WebSocket class that always throws: SSE carries the session", async () => {
  class Broken {
    constructor() {
      throw new Error("WebSocket blocked");
    }
  }
  const erin = client(server, "erin", { WebSocket: Broken });
  await resumed(erin, 15000);
  assert.equal(erin.transport, "sse");
  const conv = await erin.createConversation({ kind: "group", title: "x", members: ["frank"] });
  const m = await erin.send(conv.id, "via sse").sent;
  assert.equal(m.body, "via sse");
});
