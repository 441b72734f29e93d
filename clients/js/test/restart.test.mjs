import assert from "node:assert/strict";
import { test } from "node:test";
import { serverPerFile, client, waitFor, assertOrdered, recordingWebSocket, uniqueBodies, resumed } from "./helpers.mjs";

const server = serverPerFile();

test("server SIGKILLed and restarted mid-conversation, sends in flight and while it is down: each message once, in order", async () => {
  const alice = client(server, "alice");
  const bob = client(server, "bob");
  const conv = await server.group("alice", ["bob"]);
  await Promise.all([resumed(alice), resumed(bob)]);
  await alice.getConversation(conv); // both learn its cursor
  await bob.getConversation(conv);

  const expected = [];
  const sendOne = (who, body) => {
    expected.push(body);
    return who.send(conv, body);
  };
  for (let i = 0; i < 10; i++) sendOne(i % 2 ? bob : alice, `before ${i}`);
  await waitFor(() => bob.bodies(conv).length === 10 && alice.bodies(conv).length === 10, 10000, "first ten");

  // Sends in flight when the server dies.
  const inFlight = [];
  for (let i = 0; i < 20; i++) inFlight.push(sendOne(alice, `flight ${i}`));
  await server.kill("SIGKILL");
  await waitFor(() => alice.state !== "connected" && bob.state !== "connected", 5000, "both see the drop");

  // Sends while the server is down: kept in the outbox.
  for (let i = 0; i < 10; i++) sendOne(i % 2 ? bob : alice, `down ${i}`);
  assert.ok(alice.pending().length >= 5);

  await server.start(); // same data dir, same port
  await Promise.all(inFlight.map((o) => o.sent));
  await waitFor(() => bob.bodies(conv).length >= 40 && alice.bodies(conv).length >= 40, 20000, "all 40 messages");
  await waitFor(() => alice.pending().length === 0 && bob.pending().length === 0, 10000, "outboxes empty");

  for (const c of [alice, bob]) {
    const bodies = uniqueBodies(assert, c, conv);
    assert.equal(bodies.length, 40);
    assertOrdered(assert, c);
    // per sender, in send order
    for (const prefix of ["before", "flight", "down"]) {
      for (const who of ["alice", "bob"]) {
        const mine = expected.filter((b) => b.startsWith(prefix) && sender(b) === who);
        const seen = c.messages(conv).filter((e) => e.message.body.startsWith(prefix) && e.message.sender_id === who).map((e) => e.message.body);
        assert.deepEqual(seen, mine);
      }
    }
  }
  // Stored once each on the server too.
  const page = await alice.history(conv, { limit: 100 });
  assert.equal(page.messages.length, 40);
  assert.equal(new Set(page.messages.map((m) => m.body)).size, 40);

  function sender(body) {
    const [prefix, n] = body.split(" ");
    if (prefix === "flight") return "alice";
    return Number(n) % 2 ? "bob" : "alice";
  }
});

test("sockets cut while messages are in flight: reconnect, resume, nothing lost or doubled", async () => {
  const rec = recordingWebSocket();
  const alice = client(server, "carol", { WebSocket: rec.WebSocket });
  const bob = client(server, "dave");
  const conv = await server.group("carol", ["dave"]);
  await Promise.all([resumed(alice), resumed(bob)]);
  await alice.getConversation(conv);
  await bob.getConversation(conv);
  const sent = [];
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < 10; i++) sent.push(alice.send(conv, `r${round} m${i}`));
    rec.cut(); // drop the socket with sends on the wire
    await alice.once("resumed", undefined, 10000);
  }
  await Promise.all(sent.map((o) => o.sent));
  await waitFor(() => bob.bodies(conv).length >= 50, 10000, "bob has 50");
  const want = sent.map((o) => o.message.body);
  assert.deepEqual(uniqueBodies(assert, bob, conv), want);
  assert.deepEqual(uniqueBodies(assert, alice, conv), want);
  assertOrdered(assert, alice);
  assertOrdered(assert, bob);
  assert.ok(rec.sockets.length >= 6);
});

test("a request pending when the connection drops fails with connection_lost; the outbox send is kept", async () => {
  const rec = recordingWebSocket();
  const erin = client(server, "erin", { WebSocket: rec.WebSocket });
  const conv = await server.group("erin", ["frank"]);
  await resumed(erin);
  const ping = erin.request({ type: "ping" });
  const out = erin.send(conv, "kept");
  rec.cut();
  await assert.rejects(ping, (e) => e.code === "connection_lost" || e.code === "not_connected");
  const message = await out.sent;
  assert.equal(message.body, "kept");
  // Connected again: requests work.
  const ack = await erin.request({ type: "ping" });
  assert.equal(ack.type, "ack");
});
