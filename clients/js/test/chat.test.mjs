import assert from "node:assert/strict";
import { test } from "node:test";
import { serverPerFile, client, waitFor, assertOrdered, resumed } from "./helpers.mjs";

const server = serverPerFile();

test("two clients chat: acks, then delivered and read from the other member's receipts", async () => {
  const alice = client(server, "alice");
  const bob = client(server, "bob");
  await Promise.all([resumed(alice), resumed(bob)]);
  const conv = await alice.createConversation({ kind: "group", title: "t", members: ["bob"] });
  const statuses = [];
  alice.on("message.status", (e) => statuses.push(e.status));
  const out = alice.send(conv.id, "hello bob");
  assert.equal(out.status, "pending");
  const message = await out.sent;
  assert.equal(message.body, "hello bob");
  await waitFor(() => bob.bodies(conv.id).length === 1, 5000, "bob gets the message");
  await waitFor(() => statuses.includes("delivered"), 5000, "delivered");
  assert.equal(out.status, "delivered");
  await bob.markRead(conv.id);
  await waitFor(() => statuses.includes("read"), 5000, "read");
  assert.deepEqual(statuses, ["pending", "sent", "delivered", "read"]);
  bob.send(conv.id, "hi alice");
  await waitFor(() => alice.bodies(conv.id).length === 2, 5000);
  assert.deepEqual(alice.bodies(conv.id), ["hello bob", "hi alice"]);
  assertOrdered(assert, alice);
  assertOrdered(assert, bob);
});
