import assert from "node:assert/strict";
import { test } from "node:test";
import { serverPerFile, client, waitFor, assertOrdered, recordingWebSocket, uniqueBodies, resumed } from "./helpers.mjs";

const server = serverPerFile({ HUBBUB_RESUME_LIMIT: "5" });

test("too_far_behind: the missed messages are paged over REST, once each and in order, then live goes on", async () => {
  const rec = recordingWebSocket();
  const alice = client(server, "alice");
  const bob = client(server, "bob", { WebSocket: rec.WebSocket });
  const conv = await server.group("alice", ["bob"]);
  await Promise.all([resumed(alice), resumed(bob)]);
  await bob.getConversation(conv);
  await alice.send(conv, "seen live").sent;
  await waitFor(() => bob.bodies(conv).length === 1, 5000);

  bob.setOnline(false); // stays down until told
  rec.cut();
  await waitFor(() => bob.state === "disconnected", 5000);
  const missed = [];
  for (let i = 0; i < 130; i++) missed.push(alice.send(conv, `missed ${i}`)); // > one REST page, > resume limit
  await Promise.all(missed.map((o) => o.sent));
  await alice.editMessage(missed[3].message.id, "missed 3 (edited)");

  const reloaded = bob.once("conversation.updated", (e) => e.conversation.id === conv, 15000);
  bob.setOnline(true);
  const back = await bob.once("resumed", undefined, 10000);
  assert.equal(back.conversations[conv].status, "too_far_behind");
  await reloaded;
  alice.send(conv, "live again");
  await waitFor(() => bob.bodies(conv).includes("live again"), 10000, "live after reload");
  const bodies = uniqueBodies(assert, bob, conv);
  const want = ["seen live", ...missed.map((o, i) => (i === 3 ? "missed 3 (edited)" : o.message.body)), "live again"];
  assert.deepEqual(bodies, want);
  assertOrdered(assert, bob);
  assert.equal(bob.cursor(conv), (await bob.getConversation(conv)).last_seq);
});

test("too_far_behind and the REST reload fails: it is retried by itself, with no new event to prompt it", async () => {
  const rec = recordingWebSocket();
  let failHistory = 0;
  const flaky = (url, init) => {
    if (String(url).includes("/messages?") && failHistory > 0) {
      failHistory -= 1;
      return Promise.reject(new TypeError("network down"));
    }
    return fetch(url, init);
  };
  const alice = client(server, "alice");
  const bob = client(server, "bob", { WebSocket: rec.WebSocket, fetch: flaky });
  const conv = await server.group("alice", ["bob"]);
  await Promise.all([resumed(alice), resumed(bob)]);
  await bob.getConversation(conv);
  bob.setOnline(false);
  rec.cut();
  await waitFor(() => bob.state === "disconnected", 5000);
  const missed = [];
  for (let i = 0; i < 10; i++) missed.push(alice.send(conv, `gone ${i}`));
  await Promise.all(missed.map((o) => o.sent));
  failHistory = 1;
  const warned = bob.once("warning", (e) => /reloading/.test(e.message), 10000);
  const reloaded = bob.once("conversation.updated", (e) => e.conversation.id === conv, 15000);
  bob.setOnline(true);
  await warned;
  await reloaded;
  assert.deepEqual(uniqueBodies(assert, bob, conv), missed.map((o) => o.message.body));
  assertOrdered(assert, bob);
});
